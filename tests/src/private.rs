//! Servers and processes of a test's own, for fault tests: a `redis-server` and a PostgreSQL
//! cluster on free loopback ports that a test may stop and restart without disturbing any other
//! test, and guards over spawned fleet binaries that kill them when the test ends (or fails).
//!
//! Everything here is stopped on `Drop`. A missing server binary is an error that says what to
//! install, so the test fails with a clear message.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;
use tradefleet_migrations::Migrator;

use crate::TEST_VAULT_KEYS;

/// How long a private server may take to come up.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// A free loopback TCP port (bound, then released: good enough for tests).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `patience` saying `what`.
pub async fn wait_for<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + patience;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(format!("{e:#}")),
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {patience:?} waiting for {what}{}",
                last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `redis-server` answers `PING` on `port`.
fn redis_pings(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A `redis-server` of the test's own on a free port, without persistence (`--save ''
/// --appendonly no`): a restart comes back empty, as after losing a Redis node. Killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it answers `PING`.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = find_in_path("redis-server").context(
            "redis-server not found in PATH: install Redis (Debian: apt-get install redis-server)",
        )?;
        let mut redis = Self {
            port: free_port()?,
            binary,
            dir: tempfile::tempdir().context("creating a directory for redis-server")?,
            child: None,
        };
        redis.restart().await?;
        Ok(redis)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crashed Redis: everything in it is lost.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it if running and starts it again, empty, on the same port; waits for `PING`.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("redis.log"))?;
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let port = self.port;
        let started = wait_for(
            START_PATIENCE,
            "redis-server to answer PING",
            || async move {
                Ok(tokio::task::spawn_blocking(move || redis_pings(port))
                    .await?
                    .then_some(()))
            },
        )
        .await;
        if let Err(e) = started {
            let log =
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
            bail!("{e:#}\nredis-server log:\n{log}");
        }
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl` in a temporary directory, trust
/// authentication, user `postgres`, loopback only, fsync off) on a free port. The binaries come
/// from `/usr/lib/postgresql/<newest>/bin` or PATH. PostgreSQL refuses to run as root, so under
/// root every command runs as the `postgres` system user (`runuser`, else `setpriv`), which owns
/// the directory. Stopped on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    port: u16,
    bin: PathBuf,
    /// Prefix that runs a command as `postgres` (empty when not root).
    run_as: Vec<String>,
    dir: tempfile::TempDir,
    running: bool,
}

fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(initdb) = find_in_path("initdb")
        && let Some(dir) = initdb.parent()
        && dir.join("pg_ctl").is_file()
    {
        return Ok(dir.to_path_buf());
    }
    bail!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or \
         PATH: install them (Debian: apt-get install postgresql)"
    )
}

impl PrivatePostgres {
    /// Creates the cluster and starts it.
    pub async fn start_new() -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("tf-pg-")
            .tempdir()
            .context("creating a directory for PostgreSQL")?;
        let run_as = if is_root() {
            let ok = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .context("running chown")?;
            if !ok.success() {
                bail!(
                    "running as root, PostgreSQL needs the `postgres` system user to own its \
                     directory, and `chown postgres: {}` failed: install the postgresql package \
                     (it creates the user)",
                    dir.path().display()
                );
            }
            if let Some(runuser) = find_in_path("runuser") {
                vec![
                    runuser.display().to_string(),
                    "-u".into(),
                    "postgres".into(),
                    "--".into(),
                ]
            } else if let Some(setpriv) = find_in_path("setpriv") {
                vec![
                    setpriv.display().to_string(),
                    "--reuid=postgres".into(),
                    "--regid=postgres".into(),
                    "--init-groups".into(),
                ]
            } else {
                bail!("running as root needs runuser or setpriv (util-linux) to run PostgreSQL")
            }
        } else {
            Vec::new()
        };
        let mut pg = Self {
            port: free_port()?,
            bin,
            run_as,
            dir,
            running: false,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-U"),
                OsStr::new("postgres"),
                OsStr::new("-A"),
                OsStr::new("trust"),
                OsStr::new("-E"),
                OsStr::new("UTF8"),
                OsStr::new("--locale=C"),
                OsStr::new("--no-sync"),
            ],
        )
        .await?;
        pg.start().await?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the cluster's binaries (as `postgres` under root); fails with its output.
    async fn run(&self, tool: &str, args: &[&OsStr]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await?
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name`, migrates it and returns its URL.
    pub async fn migrated_database(&self, name: &str) -> anyhow::Result<String> {
        let admin = Database::connect(self.url("postgres"))
            .await
            .context("connecting to the private PostgreSQL")?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await.ok();
        let url = self.url(name);
        let db = Database::connect(url.as_str()).await?;
        Migrator::up(&db, None)
            .await
            .context("migrating the private database")?;
        db.close().await.ok();
        Ok(url)
    }

    /// Starts the server (after [`PrivatePostgres::stop`]) and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.running {
            return Ok(());
        }
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let started = self
            .run(
                "pg_ctl",
                &[
                    OsStr::new("-D"),
                    data.as_os_str(),
                    OsStr::new("-l"),
                    log.as_os_str(),
                    OsStr::new("-o"),
                    OsStr::new(&options),
                    OsStr::new("-w"),
                    OsStr::new("-t"),
                    OsStr::new("30"),
                    OsStr::new("start"),
                ],
            )
            .await;
        if let Err(e) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("{e:#}\npostgres log:\n{log}");
        }
        self.running = true;
        Ok(())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: connections drop, as in an outage).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-m"),
                OsStr::new("immediate"),
                OsStr::new("-w"),
                OsStr::new("stop"),
            ],
        )
        .await?;
        self.running = false;
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let exe = self.bin.join("pg_ctl");
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let _ = cmd
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A spawned fleet binary, its output in a log file. Killed (SIGKILL) on drop, so a failing
/// test leaves nothing running.
#[derive(Debug)]
pub struct FleetProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// Port of its `/healthz` server.
    pub port: u16,
}

/// What the fleet processes of one test share.
#[derive(Debug, Clone)]
pub struct FleetEnv {
    pub database_url: String,
    pub redis_url: String,
    pub key_prefix: String,
    /// Extra `KEY=value` environment for every process.
    pub extra: Vec<(String, String)>,
}

impl FleetEnv {
    pub fn new(database_url: &str, redis_url: &str, key_prefix: &str) -> Self {
        Self {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            key_prefix: key_prefix.into(),
            extra: Vec::new(),
        }
    }

    /// Adds `key=value` to every process spawned afterwards.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.extra.push((key.into(), value.to_string()));
        self
    }

    /// Spawns workspace binary `bin` (`worker` or `scheduler`) with this environment plus `env`,
    /// its health server on a free port (`TRADEFLEET__<SECTION>__LISTEN`).
    pub fn spawn(&self, bin: &str, env: &[(&str, String)]) -> anyhow::Result<FleetProcess> {
        let exe = crate::workspace_bin(bin)?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join(format!("{bin}.log"));
        let file = std::fs::File::create(&log)?;
        let port = free_port()?;
        let mut cmd = Command::new(exe);
        cmd.env_clear()
            .current_dir(dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("TRADEFLEET__REDIS__KEY_PREFIX", &self.key_prefix)
            .env(
                format!("TRADEFLEET__{}__LISTEN", bin.to_ascii_uppercase()),
                format!("127.0.0.1:{port}"),
            );
        if bin == "worker" {
            cmd.env("TRADEFLEET__VAULT__KEYS", TEST_VAULT_KEYS);
        }
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawning {bin}"))?;
        Ok(FleetProcess {
            name: bin.into(),
            child: Some(child),
            log,
            _dir: dir,
            port,
        })
    }
}

impl FleetProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (`KILL`, `TERM`, ...) with `kill -s`.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let ok = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .context("running kill")?;
        if !ok.success() {
            bail!("kill -s {signal} {} failed", self.pid());
        }
        Ok(())
    }

    /// The exit status if it has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("{} was already reaped", self.name),
        }
    }

    /// Waits (polling) up to `patience` for the process to exit.
    pub async fn wait_exit(&mut self, patience: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {patience:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until `GET /readyz` answers 200 (failing early if the process exits).
    pub async fn wait_ready(&mut self, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.exited()? {
                bail!(
                    "{} exited ({status}) before it was ready; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            let port = self.port;
            if tokio::task::spawn_blocking(move || http_status(port, "/readyz")).await? == Some(200)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready within {patience:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where it logs.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status code of `GET path` on loopback `port`, or `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}
