//! Why a process ended: the exit status and the thread that ended it, pieced together from
//! `exit_group` calls, fatal signals and the last thread's exit.

use std::collections::HashMap;

use observer_common::sysno;

/// Signals that mean a crash, not a shutdown: in host mode only these make a plain process's
/// exit worth an alert (every `grep` that finds nothing exits with status 1).
const CRASH_SIGNALS: [&str; 7] = [
    "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT", "SIGSYS", "SIGTRAP",
];

/// On a whole host, processes end all the time: only crashes and Go fatal errors are worth an
/// alert, plus failures of processes the user singled out with `--comm`/`--cgroup`. (The one
/// process of `watch`/`run` is always reported.)
pub fn host_exit_worth_an_alert(
    singled_out: bool,
    exit_code: Option<i32>,
    signal: Option<&str>,
    go_fatal: bool,
) -> bool {
    go_fatal
        || signal.is_some_and(|s| CRASH_SIGNALS.contains(&s))
        || (singled_out && (signal.is_some() || exit_code != Some(0)))
}

/// The verdict for one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEnd {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub by_tid: u32,
}

#[derive(Debug, Default)]
struct Clues {
    exit_group: Option<(u32, i32)>,
    /// First fatal signal other than SIGKILL, and SIGKILL if that is all there was.
    signal: Option<(u32, i32)>,
    kill: Option<(u32, i32)>,
}

#[derive(Debug, Default)]
pub struct ProcessExits {
    clues: HashMap<u32, Clues>,
}

const SIGKILL: i32 = 9;

impl ProcessExits {
    /// A thread left through a syscall (or was torn down inside one).
    pub fn thread_exited(&mut self, tgid: u32, tid: u32, syscall: i64, arg0: u64) {
        if syscall == sysno::EXIT_GROUP as i64 {
            let c = self.clues.entry(tgid).or_default();
            c.exit_group.get_or_insert((tid, (arg0 & 0xff) as i32));
        }
    }

    /// A signal whose default action kills the process was delivered to `tid`.
    pub fn fatal_signal(&mut self, tgid: u32, tid: u32, sig: i32) {
        let c = self.clues.entry(tgid).or_default();
        if sig == SIGKILL {
            c.kill.get_or_insert((tid, sig));
        } else {
            c.signal.get_or_insert((tid, sig));
        }
    }

    /// The last thread is gone: decide. `last_*` describe that thread's own exit.
    pub fn process_ended(
        &mut self,
        tgid: u32,
        last_tid: u32,
        last_syscall: i64,
        last_arg0: u64,
    ) -> ProcessEnd {
        self.thread_exited(tgid, last_tid, last_syscall, last_arg0);
        let c = self.clues.remove(&tgid).unwrap_or_default();
        // exit_group kills the other threads with SIGKILL: that SIGKILL is not the cause.
        if let Some((tid, sig)) = c.signal {
            return ProcessEnd {
                exit_code: None,
                signal: Some(sig),
                by_tid: tid,
            };
        }
        if let Some((tid, code)) = c.exit_group {
            return ProcessEnd {
                exit_code: Some(code),
                signal: None,
                by_tid: tid,
            };
        }
        if let Some((tid, sig)) = c.kill {
            return ProcessEnd {
                exit_code: None,
                signal: Some(sig),
                by_tid: tid,
            };
        }
        // Every thread ended itself with exit(2): the last one's status is the process's.
        let code = (last_syscall == sysno::EXIT as i64).then_some((last_arg0 & 0xff) as i32);
        ProcessEnd {
            exit_code: code.or(Some(0)),
            signal: None,
            by_tid: last_tid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_exits() {
        let worth = host_exit_worth_an_alert;
        assert!(!worth(false, Some(1), None, false));
        assert!(!worth(false, None, Some("SIGTERM"), false));
        assert!(!worth(false, Some(0), None, false));
        assert!(worth(false, None, Some("SIGSEGV"), false));
        assert!(worth(false, None, Some("SIGABRT"), false));
        assert!(worth(false, Some(2), None, true));
        assert!(worth(true, Some(1), None, false));
        assert!(worth(true, None, Some("SIGTERM"), false));
        assert!(!worth(true, Some(0), None, false));
    }

    #[test]
    fn exit_group_from_a_worker_names_it() {
        let mut p = ProcessExits::default();
        p.thread_exited(10, 12, sysno::EXIT_GROUP as i64, 3);
        p.fatal_signal(10, 11, SIGKILL); // the others are zapped
        let end = p.process_ended(10, 11, sysno::FUTEX as i64, 0);
        assert_eq!(
            end,
            ProcessEnd {
                exit_code: Some(3),
                signal: None,
                by_tid: 12
            }
        );
    }

    #[test]
    fn segv_wins_over_the_kills_it_causes() {
        let mut p = ProcessExits::default();
        p.fatal_signal(10, 11, SIGKILL);
        p.fatal_signal(10, 13, 11);
        let end = p.process_ended(10, 10, -1, 0);
        assert_eq!(
            end,
            ProcessEnd {
                exit_code: None,
                signal: Some(11),
                by_tid: 13
            }
        );
    }

    #[test]
    fn external_sigkill() {
        let mut p = ProcessExits::default();
        p.fatal_signal(10, 10, SIGKILL);
        let end = p.process_ended(10, 10, 202, 0);
        assert_eq!(end.signal, Some(SIGKILL));
        assert_eq!(end.exit_code, None);
    }

    #[test]
    fn last_thread_exit_status() {
        let mut p = ProcessExits::default();
        let end = p.process_ended(10, 14, sysno::EXIT as i64, 7);
        assert_eq!(
            end,
            ProcessEnd {
                exit_code: Some(7),
                signal: None,
                by_tid: 14
            }
        );
    }
}
