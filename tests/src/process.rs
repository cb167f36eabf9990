//! The processes of a test: root check, polling, pids and tids, process trees, and reading
//! what they wrote.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

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
pub(crate) fn descendants_of(pid: u32) -> Vec<u32> {
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

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... ({} more bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
