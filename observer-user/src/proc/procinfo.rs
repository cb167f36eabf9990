//! Facts about a process read from `/proc`: its pid inside its own pid namespace, its cgroup,
//! whether it is a kernel thread, and the list of processes on the host.
//!
//! Parsers are pure and take the file's text, so they are tested without a live process.

use std::path::Path;

/// `PF_KTHREAD` in `task_struct.flags` (the 9th field of `/proc/PID/stat`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// The innermost id of an `NSpid:` line of `/proc/PID/status` when it differs from the host
/// id (the first one), i.e. when the task lives in a child pid namespace (a container).
pub fn parse_ns_id(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let ids: Vec<u32> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match ids.as_slice() {
        [host, .., inner] if host != inner => Some(*inner),
        _ => None,
    }
}

/// The task's id in its own pid namespace, when it is not the host's.
pub fn ns_id(pid: u32, tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    parse_ns_id(&status)
}

/// Thread ids inside the process's pid namespace -> host thread ids (empty outside one).
pub fn ns_thread_ids(pid: u32) -> std::collections::HashMap<u32, u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    dir.filter_map(|e| {
        let host: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        Some((ns_id(pid, host)?, host))
    })
    .collect()
}

/// The cgroup v2 path (`0::/system.slice/foo.service` -> `/system.slice/foo.service`) of a
/// `/proc/PID/cgroup` text.
pub fn parse_cgroup_v2(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_cgroup_v2(&text).map(str::to_string)
}

/// Whether a `/proc/PID/stat` text is a kernel thread's. The comm field may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_is_kernel_thread(stat: &str) -> Option<bool> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the comm: state ppid pgrp session tty_nr tpgid flags -> flags is the 7th.
    let flags: u64 = rest.split_whitespace().nth(6)?.parse().ok()?;
    Some(flags & PF_KTHREAD != 0)
}

/// When the process started, in nanoseconds since boot (field 22 of `/proc/PID/stat`, in
/// clock ticks), the clock of kernel timestamps on a machine that never suspended.
pub fn parse_start_time_ns(stat: &str, ticks_per_second: u64) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some(ticks.saturating_mul(1_000_000_000) / ticks_per_second.max(1))
}

pub fn start_time_ns(pid: u32) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time_ns(&stat, u64::try_from(hz).unwrap_or(100))
}

/// A user-space process (not a kernel thread) that exists now.
pub fn is_user_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_is_kernel_thread(&s))
        .is_some_and(|kthread| !kthread)
}

/// Every process id under `/proc` (kernel threads included; see [`is_user_process`]).
pub fn all_pids(proc_root: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The process's name (`/proc/PID/comm`).
pub fn comm_of(pid: u32) -> Option<String> {
    read_comm(&format!("/proc/{pid}/comm"))
}

/// A thread's name (`/proc/PID/task/TID/comm`).
pub fn thread_comm_of(pid: u32, tid: u32) -> Option<String> {
    read_comm(&format!("/proc/{pid}/task/{tid}/comm"))
}

/// Whether thread `tid` of process `pid` exists now (0 is no thread).
pub fn thread_exists(pid: u32, tid: u32) -> bool {
    tid != 0 && std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

fn read_comm(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_id_only_when_nested() {
        assert_eq!(parse_ns_id("Name:\tx\nNSpid:\t4242\n"), None);
        assert_eq!(parse_ns_id("NSpid:\t4242\t17\n"), Some(17));
        assert_eq!(parse_ns_id("NSpid:\t4242\t99\t1\n"), Some(1));
        assert_eq!(parse_ns_id("NSpid:\t4242\t4242\n"), None);
        assert_eq!(parse_ns_id("NSpid:\tx 1\n"), None);
        assert_eq!(parse_ns_id(""), None);
    }

    #[test]
    fn cgroup_v2_line() {
        assert_eq!(
            parse_cgroup_v2("0::/system.slice/nginx.service\n"),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(parse_cgroup_v2("1:name=systemd:/x\n"), None);
    }

    #[test]
    fn kernel_threads_by_flags() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0";
        let user = "77 (a (weird) name) S 1 77 77 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 1 0";
        assert_eq!(parse_is_kernel_thread(kthread), Some(true));
        assert_eq!(parse_is_kernel_thread(user), Some(false));
        assert_eq!(parse_is_kernel_thread("garbage"), None);
        assert_eq!(parse_is_kernel_thread("1 (x) S"), None);
    }

    #[test]
    fn start_time_from_stat() {
        let stat = "77 (a (weird) name) S 1 77 77 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 1 0 250 1000";
        assert_eq!(parse_start_time_ns(stat, 100), Some(2_500_000_000));
        assert_eq!(parse_start_time_ns("1 (x) S 1", 100), None);
        assert!(start_time_ns(std::process::id()).is_some());
    }

    #[test]
    fn this_process_is_a_user_process() {
        assert!(is_user_process(std::process::id()));
        assert!(all_pids(Path::new("/proc")).contains(&std::process::id()));
    }
}
