//! Process metrics (resident memory, CPU seconds, open file descriptors) read from `/proc/self`
//! at scrape time. Where `/proc` is missing (not Linux) the families are simply absent.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

/// Clock ticks per second of the `utime`/`stime` fields: `USER_HZ`, fixed at 100 by the Linux
/// ABI on every architecture we run on.
const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub(super) struct ProcessCollector {
    rss: Gauge,
    cpu: Counter,
    fds: IntGauge,
    /// Serializes scrapes so the CPU counter's catch-up increment is not applied twice.
    scrape: Mutex<()>,
}

impl ProcessCollector {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            rss: Gauge::with_opts(Opts::new(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ))?,
            cpu: Counter::with_opts(Opts::new(
                "process_cpu_seconds_total",
                "User and system CPU time spent, in seconds.",
            ))?,
            fds: IntGauge::with_opts(Opts::new("process_open_fds", "Open file descriptors."))?,
            scrape: Mutex::new(()),
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.rss.desc();
        d.extend(self.cpu.desc());
        d.extend(self.fds.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _scrape = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::with_capacity(3);
        if let Some(bytes) = read_rss_bytes() {
            self.rss.set(bytes as f64);
            out.extend(self.rss.collect());
        }
        if let Some(seconds) = read_cpu_seconds() {
            let delta = seconds - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
            out.extend(self.cpu.collect());
        }
        if let Some(fds) = count_open_fds() {
            self.fds.set(i64::try_from(fds).unwrap_or(i64::MAX));
            out.extend(self.fds.collect());
        }
        out
    }
}

fn read_rss_bytes() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

fn read_cpu_seconds() -> Option<f64> {
    parse_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn count_open_fds() -> Option<usize> {
    // The directory handle used to list it is itself one of the entries; it is not subtracted,
    // as the standard collectors do not either.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// `VmRSS:   12345 kB` -> bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `utime + stime` of `/proc/self/stat`, in seconds. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After `)`: field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        assert_eq!(
            parse_vm_rss("Name:\tw\nVmPeak:\t 9 kB\nVmRSS:\t   2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(parse_vm_rss("Name:\tw\n"), None);
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("42 (x) S 1"), None);
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }
}
