//! Child processes: captured output with arrival times, CPU and memory of the process itself.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[derive(Clone, Copy)]
pub(super) enum Stream {
    Out,
    Err,
}

type Lines = Arc<Mutex<Vec<(Duration, String)>>>;

pub(super) struct Proc {
    child: Child,
    pub(super) pid: i32,
    started: Instant,
    out: Lines,
    err: Lines,
    readers: Vec<JoinHandle<()>>,
}

/// How far a watched process (observer, a tracer) had got when it said it was attached.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attach {
    /// Since it started.
    pub(super) at: Duration,
    /// Its CPU time by then: the start-up cost (BTF, verifier, attach).
    pub(super) cpu: Option<Duration>,
}

pub(super) struct Ended {
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) status: Option<ExitStatus>,
    pub(super) timed_out: bool,
    pub(super) wall: Duration,
    /// utime + stime of the process itself, read from /proc while it is a zombie.
    pub(super) cpu: Option<Duration>,
    /// The last VmHWM seen while it ran.
    pub(super) max_rss_kib: Option<u64>,
}

impl Ended {
    /// The output, or an error naming how the process failed.
    pub(super) fn checked(self, what: &str) -> Result<Ended> {
        if self.timed_out {
            bail!(
                "{what} timed out and was killed; last output: {}",
                tail(&self.stderr, 3)
            );
        }
        match self.status {
            Some(s) if s.success() => Ok(self),
            Some(s) => bail!("{what} failed ({s}): {}", tail(&self.stderr, 3)),
            None => bail!("{what}: exit status unknown"),
        }
    }
}

impl Proc {
    pub(super) fn spawn(cmd: &mut Command) -> Result<Proc> {
        let shown = crate::util::describe(cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{shown}`"))?;
        let started = Instant::now();
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        let out: Lines = Arc::default();
        let err: Lines = Arc::default();
        let mut readers = Vec::new();
        if let Some(s) = child.stdout.take() {
            readers.push(reader(s, Arc::clone(&out), started));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(reader(s, Arc::clone(&err), started));
        }
        Ok(Proc {
            child,
            pid,
            started,
            out,
            err,
            readers,
        })
    }

    /// Waits until a line containing `needle` arrives; returns how long after the start it came,
    /// or None on timeout or when the process ended first.
    pub(super) fn wait_line(
        &self,
        stream: Stream,
        needle: &str,
        timeout: Duration,
    ) -> Option<Duration> {
        let lines = match stream {
            Stream::Out => &self.out,
            Stream::Err => &self.err,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(l) = lines.lock() {
                if let Some((at, _)) = l.iter().find(|(_, text)| text.contains(needle)) {
                    return Some(*at);
                }
            }
            if Instant::now() >= deadline || has_exited(self.pid) {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lines of `stream` so far, each with the moment it arrived.
    pub(super) fn lines(&self, stream: Stream) -> Vec<(Instant, String)> {
        let lines = match stream {
            Stream::Out => &self.out,
            Stream::Err => &self.err,
        };
        lines
            .lock()
            .map(|l| {
                l.iter()
                    .map(|(at, text)| (self.started + *at, text.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for observer's line saying its probes are attached, and notes its CPU time then.
    pub(super) fn wait_attached(&self, needle: &str) -> Option<Attach> {
        let at = self.wait_line(Stream::Err, needle, Duration::from_secs(60))?;
        Some(Attach {
            at,
            cpu: proc_cpu(self.pid),
        })
    }

    pub(super) fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(self.pid, sig);
        }
    }

    /// Waits for the process to end (killing it at `timeout`), calling `tick` with its pid about
    /// every 50 ms while it runs.
    pub(super) fn finish(mut self, timeout: Duration, mut tick: impl FnMut(i32)) -> Ended {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let mut max_rss_kib = None;
        while !has_exited(self.pid) {
            if let Some(kib) = fs::read_to_string(format!("/proc/{}/status", self.pid))
                .ok()
                .and_then(|s| parse_vm_hwm_kib(&s))
            {
                max_rss_kib = Some(kib.max(max_rss_kib.unwrap_or(0)));
            }
            tick(self.pid);
            if !timed_out && Instant::now() >= deadline {
                timed_out = true;
                self.signal(libc::SIGKILL);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let wall = self.started.elapsed();
        let cpu = proc_cpu(self.pid);
        let status = self.child.wait().ok();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let text = |l: &Lines| {
            l.lock()
                .map(|v| {
                    v.iter()
                        .map(|(_, s)| s.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        Ended {
            stdout: text(&self.out),
            stderr: text(&self.err),
            status,
            timed_out,
            wall,
            cpu,
            max_rss_kib,
        }
    }
}

fn reader(stream: impl Read + Send + 'static, lines: Lines, started: Instant) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if let Ok(mut l) = lines.lock() {
                        l.push((started.elapsed(), line));
                    }
                }
            }
        }
    })
}

/// True once the child has ended; it is left a zombie (WNOWAIT) so that /proc still shows its
/// final CPU times, which are gone once it is reaped.
pub(super) fn has_exited(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain data; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a siginfo_t we own; WNOHANG keeps the call from blocking.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        // ECHILD: nothing left to wait for, which for our purposes means it ended.
        return true;
    }
    // SAFETY: after a successful waitid the si_pid field is initialised (0 when nothing exited).
    unsafe { info.si_pid() != 0 }
}

/// utime + stime of a process (all its threads, not its children).
pub(super) fn proc_cpu(pid: i32) -> Option<Duration> {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_proc_stat_ticks(&s))
        .map(ticks_to_duration)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

pub(super) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        "(no output)".into()
    } else {
        t
    }
}

/// Runs `argv` (program first).
pub(super) fn command(argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

/// utime + stime (clock ticks) from /proc/PID/stat. The command name may hold spaces and
/// parentheses, so fields are counted after the last ')'.
pub(super) fn parse_proc_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of the full line, utime 14, stime 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS and VmHWM (resident set now and at its peak) in KiB, read from /proc/PID/status.
pub(super) fn proc_rss_kib(pid: i32) -> (Option<u64>, Option<u64>) {
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => (parse_vm_rss_kib(&s), parse_vm_hwm_kib(&s)),
        Err(_) => (None, None),
    }
}

/// VmRSS (resident set now) in KiB from /proc/PID/status.
fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// VmHWM (peak RSS) in KiB from /proc/PID/status.
pub(super) fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 100 1000 10";
        assert_eq!(parse_proc_stat_ticks(stat), Some(325));
        assert_eq!(parse_proc_stat_ticks("1234 (x) S 1"), None);
        assert_eq!(
            parse_vm_hwm_kib("Name:\tx\nVmHWM:\t   51234 kB\nVmRSS:\t 1 kB\n"),
            Some(51234)
        );
        assert_eq!(parse_vm_hwm_kib("Name:\tx\n"), None);
        assert_eq!(
            parse_vm_rss_kib("Name:\tx\nVmHWM:\t   51234 kB\nVmRSS:\t 1200 kB\n"),
            Some(1200)
        );
        assert_eq!(parse_vm_rss_kib("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail("  \n", 3), "(no output)");
    }
}
