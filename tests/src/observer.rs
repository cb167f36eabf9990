//! Running the observer binary under test and collecting what it produced.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::alerts::{read_alerts, str_field};
use crate::process::{descendants_of, read_lossy, truncate};
use crate::workspace::Workspace;

/// The observer binary under test: `$OBSERVER_BIN`, else `target/release/observer` of this workspace.
pub fn observer_bin() -> PathBuf {
    let bin = match std::env::var_os("OBSERVER_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/observer"),
    };
    assert!(
        bin.is_file(),
        "observer binary not found at {}: run `cargo xtask build` first (or set OBSERVER_BIN)",
        bin.display()
    );
    bin
}

/// Builds an observer command line. Options go before `--`, the command of `run` after it.
pub struct ObserverCmd {
    binary: Option<PathBuf>,
    wrapper: Vec<OsString>,
    args: Vec<OsString>,
    command: Vec<OsString>,
    alerts: Option<PathBuf>,
}

impl ObserverCmd {
    fn new(args: Vec<OsString>) -> Self {
        ObserverCmd {
            binary: None,
            wrapper: Vec::new(),
            args,
            command: Vec::new(),
            alerts: None,
        }
    }

    /// `observer run [options] -- <command>`; name the command with [`ObserverCmd::command`].
    pub fn run() -> Self {
        Self::new(vec!["run".into()])
    }

    /// `observer watch --pid PID [options]`.
    pub fn watch(pid: u32) -> Self {
        Self::new(vec!["watch".into(), "--pid".into(), pid.to_string().into()])
    }

    /// Any argument list, for help texts and bad input.
    pub fn raw<S: AsRef<OsStr>>(args: &[S]) -> Self {
        Self::new(args.iter().map(|a| a.as_ref().to_owned()).collect())
    }

    pub fn opt(mut self, name: &str, value: &str) -> Self {
        self.args.push(name.into());
        self.args.push(value.into());
        self
    }

    /// An option without a value, e.g. `--report-idle`.
    pub fn flag(mut self, name: &str) -> Self {
        self.args.push(name.into());
        self
    }

    /// Writes alerts to `alerts.jsonl` in the workspace; [`Observer::wait`] reads them back.
    pub fn alerts(mut self, ws: &Workspace) -> Self {
        let path = ws.path("alerts.jsonl");
        self.args.push("--alerts".into());
        self.args.push(path.clone().into());
        self.alerts = Some(path);
        self
    }

    pub fn command<S: AsRef<OsStr>>(mut self, program: &Path, args: &[S]) -> Self {
        self.command.push(program.into());
        self.command
            .extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs observer through another program, e.g. `setpriv ...` or `unshare -m sh -c ...`.
    pub fn wrapped_in<S: AsRef<OsStr>>(mut self, wrapper: &[S]) -> Self {
        self.wrapper = wrapper.iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    pub fn spawn(self, ws: &Workspace) -> Observer {
        let binary = self.binary.unwrap_or_else(observer_bin);
        let mut argv: Vec<OsString> = self.wrapper;
        argv.push(binary.into());
        argv.extend(self.args);
        if !self.command.is_empty() {
            argv.push("--".into());
            argv.extend(self.command);
        }
        let shown = argv
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");

        let stdout_path = ws.path("observer.stdout");
        let stderr_path = ws.path("observer.stderr");
        let stdout = fs::File::create(&stdout_path).expect("could not create the stdout file");
        let stderr = fs::File::create(&stderr_path).expect("could not create the stderr file");
        // Files, not pipes: nothing has to drain them while the test waits, and a long output
        // can never block observer.
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group, so that the test can kill observer and whatever it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start `{shown}`: {e}"));
        Observer {
            child: Some(child),
            shown,
            stdout_path,
            stderr_path,
            alerts: self.alerts,
        }
    }

    /// Spawns and waits; the test fails if observer has not exited within `timeout`.
    pub fn run_to_end(self, ws: &Workspace, timeout: Duration) -> ObserverRun {
        self.spawn(ws).wait(timeout)
    }
}

/// A running observer; killed, with everything it started, when dropped.
pub struct Observer {
    child: Option<Child>,
    shown: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    alerts: Option<PathBuf>,
}

impl Observer {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn wait(mut self, timeout: Duration) -> ObserverRun {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let child = self.child.as_mut().expect("observer already waited for");
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    self.kill();
                    panic!(
                        "`{}` did not exit within {timeout:?}; stderr:\n{}",
                        self.shown,
                        read_lossy(&self.stderr_path)
                    );
                }
                Err(e) => panic!("waiting for observer failed: {e}"),
            }
        };
        // Whatever observer started is of no use once it has exited; do not leave it behind.
        self.kill();
        let (alerts, alerts_written) = match &self.alerts {
            Some(path) if path.exists() => (read_alerts(path), true),
            _ => (Vec::new(), false),
        };
        ObserverRun {
            command: self.shown.clone(),
            status,
            stdout: read_lossy(&self.stdout_path),
            stderr: read_lossy(&self.stderr_path),
            alerts,
            alerts_written,
        }
    }

    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Descendants first, while they are still linked to observer: once it dies they are
        // reparented and cannot be found from it any more.
        let descendants = descendants_of(pid);
        // SAFETY: plain kill(2) calls on ids this test started (its process group and children).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            for d in &descendants {
                libc::kill(*d as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What an observer run produced.
pub struct ObserverRun {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub alerts: Vec<Value>,
    /// Whether the alerts file existed after the run (observer may create it only on exit).
    pub alerts_written: bool,
}

impl ObserverRun {
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.alerts
            .iter()
            .filter(|a| str_field(a, "kind") == Some(kind))
            .collect()
    }

    /// Everything about the run, for assertion messages.
    pub fn report(&self) -> String {
        let alerts = self
            .alerts
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "command: {}\nstatus: {}\nstderr:\n{}\nstdout:\n{}\nalerts ({}):\n{}",
            self.command,
            self.status,
            self.stderr,
            truncate(&self.stdout, 4000),
            self.alerts.len(),
            truncate(&alerts, 12000)
        )
    }

    /// Observer's exit code, or 128+N when it was killed by signal N (the shell's convention).
    pub fn exit_code(&self) -> Option<i32> {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
    }
}

impl Workspace {
    /// A copy of the observer binary that any user may execute (the build tree may not be).
    pub fn public_observer_copy(&self) -> PathBuf {
        let copy = self.path("observer");
        fs::copy(observer_bin(), &copy).expect("could not copy the observer binary");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
            .expect("could not make the observer copy executable");
        copy
    }
}

/// Fault tests: what observer leaves behind in the kernel, and what it costs.
impl Observer {
    /// Everything observer has written to stderr so far (it is still running).
    pub fn stderr_so_far(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Like [`Observer::wait`], and also returns observer's peak resident memory in KiB, as the
    /// kernel accounted it when the process ended (`ru_maxrss` of `wait4`): exact, where
    /// sampling `/proc/PID/status` would miss the last moments.
    pub fn wait_with_peak_rss(mut self, timeout: Duration) -> (ObserverRun, u64) {
        let pid = self.pid() as libc::pid_t;
        let deadline = Instant::now() + timeout;
        let (status, usage) = loop {
            let mut status = 0;
            // SAFETY: rusage is plain data the kernel fills in.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child, whose Child handle has not reaped it.
            let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if reaped == pid {
                break (status, usage);
            }
            assert!(
                reaped == 0,
                "wait4 on observer failed: {}",
                std::io::Error::last_os_error()
            );
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "`{}` did not exit within {timeout:?}; stderr:\n{}",
                    self.shown,
                    read_lossy(&self.stderr_path)
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        // Reaped here, not through the Child: dropping the handle must not signal the pid
        // again (it may belong to someone else now). The process group observer led can only
        // hold what it started, and a group id is not reused while the group has members.
        drop(self.child.take());
        // SAFETY: kill(2) on the process group observer was started in.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let (alerts, alerts_written) = match &self.alerts {
            Some(path) if path.exists() => (read_alerts(path), true),
            _ => (Vec::new(), false),
        };
        let run = ObserverRun {
            command: self.shown.clone(),
            status: ExitStatus::from_raw(status),
            stdout: read_lossy(&self.stdout_path),
            stderr: read_lossy(&self.stderr_path),
            alerts,
            alerts_written,
        };
        (run, u64::try_from(usage.ru_maxrss).unwrap_or(0))
    }
}
