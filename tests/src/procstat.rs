//! CPU time of processes from `/proc`, for the benches' CPU-per-operation figures (Linux).

/// CPU seconds (user + system) used so far by the processes whose `comm` is `name`, or by
/// `pid` alone.
pub fn cpu_seconds(filter: CpuOf<'_>) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let CpuOf::Pid(p) = filter
            && p != pid
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm is in parentheses and may hold spaces: split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let CpuOf::Comm(want) = filter
            && !head.contains(&format!("({want}"))
        {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the comm: state is field 3, utime field 14, stime field 15 (1-based).
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        total += (ticks(11) + ticks(12)) / tick;
    }
    total
}

/// Whose CPU time [`cpu_seconds`] sums.
#[derive(Debug, Clone, Copy)]
pub enum CpuOf<'a> {
    /// One process.
    Pid(u32),
    /// Every process whose `comm` starts with this name.
    Comm(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cpu_time_grows_while_it_computes_and_unknown_ones_have_none() {
        let me = CpuOf::Pid(std::process::id());
        let before = cpu_seconds(me);
        // Half a second of wall time spent computing is well over two 10 ms ticks of CPU.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(500) {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let grown = cpu_seconds(me) - before;
        assert!(grown >= 0.02, "charged {grown} s");
        assert_eq!(cpu_seconds(CpuOf::Comm("no-such-process-name")), 0.0);
    }
}
