//! Real servers from Debian (installed by `cargo xtask setup`) for the end-to-end tests: MariaDB
//! with sysbench and redis with redis-benchmark. Each test starts its own instance on a private
//! socket or loopback port with its data under the test's workspace, and the instance is stopped
//! when its handle is dropped, also when the test panics. No server is left running and none
//! of the machine's own (systemd's, another test's) is touched.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::wait_until;
use crate::workspace::Workspace;

const MARIADBD: &str = "/usr/sbin/mariadbd";
const MARIADB_INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
const MARIADB: &str = "/usr/bin/mariadb";
const SYSBENCH: &str = "/usr/bin/sysbench";
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_CLI: &str = "/usr/bin/redis-cli";
const REDIS_BENCHMARK: &str = "/usr/bin/redis-benchmark";

/// How long a server has to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the programs exist; when not, says which and how to get them (`cargo xtask setup`).
fn installed(test: &str, files: &[&str]) -> bool {
    let missing: Vec<&&str> = files.iter().filter(|f| !Path::new(f).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {missing:?} missing on CI: `cargo xtask setup` installs them"
    );
    eprintln!("{test}: skipped: {missing:?} not installed (run `cargo xtask setup` as root)");
    false
}

/// Stops a server child: SIGTERM (a clean shutdown), then SIGKILL after `grace`.
fn stop(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn check(output: std::io::Result<Output>, what: &str) -> String {
    let out = output.unwrap_or_else(|e| panic!("{what}: could not run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A private MariaDB: a fresh data directory, a Unix socket in the workspace, no TCP.
pub struct MariaDb {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl MariaDb {
    /// Starts one, with a `sbtest` database; `None` (test skipped) when MariaDB is not
    /// installed outside CI.
    pub fn start(ws: &Workspace, test: &str) -> Option<MariaDb> {
        if !installed(test, &[MARIADBD, MARIADB_INSTALL_DB, MARIADB, SYSBENCH]) {
            return None;
        }
        let dir = ws.path("mariadb");
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).expect("could not create the MariaDB directory");
        check(
            Command::new(MARIADB_INSTALL_DB)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ])
                .stdin(Stdio::null())
                .output(),
            "mariadb-install-db",
        );
        let socket = dir.join("sock");
        let log = std::fs::File::create(dir.join("mariadbd.out")).expect("log file");
        let child = Command::new(MARIADBD)
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .args([
                "--skip-networking",
                "--innodb-buffer-pool-size=64M",
                // The incident tests hold locks for seconds: never time the waiter out first.
                "--innodb-lock-wait-timeout=60",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {MARIADBD}: {e}"));
        let mut db = MariaDb { child, dir, socket };
        // The first statement that works both says the server is up and makes sysbench's database.
        let up = wait_until(START_TIMEOUT, || {
            matches!(db.child.try_wait(), Ok(None))
                && db
                    .base_client()
                    .args(["-e", "CREATE DATABASE IF NOT EXISTS sbtest"])
                    .stdin(Stdio::null())
                    .output()
                    .is_ok_and(|o| o.status.success())
        });
        assert!(up, "MariaDB did not come up:\n{}", db.log());
        Some(db)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's error log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn base_client(&self) -> Command {
        let mut c = Command::new(MARIADB);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args([
                "--user=root",
                "--batch",
                "--skip-column-names",
                "--unbuffered",
            ]);
        c
    }

    fn client(&self) -> Command {
        let mut c = self.base_client();
        c.arg("sbtest");
        c
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = self
            .client()
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql` in a session of its own; panics on an error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}\n{}", self.log()))
    }

    /// Starts a client session running `sql` (statements separated by `;`) in the
    /// background; its output goes to `name.out` in the server's directory.
    pub fn session(&self, name: &str, sql: &str) -> Session {
        let out_path = self.dir.join(format!("{name}.out"));
        let out = std::fs::File::create(&out_path).expect("session output");
        let child = self
            .client()
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("session output"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start a {MARIADB} session: {e}"));
        Session {
            child,
            out: out_path,
        }
    }

    fn sysbench(&self, test: &str, extra: &[String], command: &str) -> Command {
        let mut c = Command::new(SYSBENCH);
        c.arg(test)
            .args([
                "--db-driver=mysql",
                "--mysql-user=root",
                "--mysql-db=sbtest",
                "--tables=2",
                "--table-size=10000",
            ])
            .arg(format!("--mysql-socket={}", self.socket.display()))
            .args(extra)
            .arg(command)
            .stdin(Stdio::null());
        c
    }

    /// sysbench's tables (2 x 10,000 rows: enough for row locks, quick to make).
    pub fn prepare_sysbench(&self) {
        check(
            self.sysbench("oltp_read_write", &[], "prepare").output(),
            "sysbench prepare",
        );
    }

    /// sysbench `test` with `threads` for `secs` seconds; returns its report.
    pub fn run_sysbench(&self, test: &str, threads: u32, secs: u32) -> String {
        let extra = [format!("--threads={threads}"), format!("--time={secs}")];
        check(self.sysbench(test, &extra, "run").output(), "sysbench run")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(20));
    }
}

/// A client session started in the background; killed when dropped.
pub struct Session {
    child: Child,
    out: PathBuf,
}

impl Session {
    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for it to end; panics if it has not ended within `timeout` or failed.
    pub fn wait(&mut self, timeout: Duration) -> String {
        let done = wait_until(timeout, || matches!(self.child.try_wait(), Ok(Some(_))));
        assert!(done, "a MariaDB session did not end:\n{}", self.output());
        let status = self.child.wait().expect("wait for the session");
        assert!(
            status.success(),
            "a MariaDB session failed:\n{}",
            self.output()
        );
        self.output()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private redis on a free loopback port, no persistence, DEBUG allowed (the incident test
/// blocks its event loop with `DEBUG SLEEP`).
pub struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start(ws: &Workspace, test: &str) -> Option<Redis> {
        if !installed(test, &[REDIS_SERVER, REDIS_CLI, REDIS_BENCHMARK]) {
            return None;
        }
        let dir = ws.path("redis");
        std::fs::create_dir_all(&dir).expect("could not create the redis directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        let log = std::fs::File::create(dir.join("redis.out")).expect("log file");
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {REDIS_SERVER}: {e}"));
        let mut redis = Redis { child, port, dir };
        let up = wait_until(START_TIMEOUT, || {
            matches!(redis.child.try_wait(), Ok(None))
                && redis.try_cli(&["PING"]).is_ok_and(|o| o.contains("PONG"))
        });
        assert!(up, "redis did not come up:\n{}", redis.log());
        Some(redis)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.out")).unwrap_or_default()
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(REDIS_CLI)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A redis-cli command; panics on an error.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("redis-cli {args:?} failed: {e}\n{}", self.log()))
    }

    /// A redis-cli command in the background (e.g. one that blocks the server).
    pub fn cli_background(&self, args: &[&str]) -> Child {
        Command::new(REDIS_CLI)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {REDIS_CLI}: {e}"))
    }

    /// redis-benchmark (GET and SET, 50 clients) for `secs` seconds; returns its output.
    pub fn benchmark(&self, secs: u64) -> String {
        let mut child = Command::new(REDIS_BENCHMARK)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            // -l: loop until stopped; -q: one line per test.
            .args(["-t", "get,set", "-c", "50", "-q", "-l"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {REDIS_BENCHMARK}: {e}"));
        std::thread::sleep(Duration::from_secs(secs));
        let _ = child.kill();
        let out = child.wait_with_output().expect("redis-benchmark output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}
