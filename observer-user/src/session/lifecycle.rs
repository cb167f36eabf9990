//! Threads and processes coming and going: creation sites, silent thread deaths, process exits.

use observer_common::{sysno, ExitEvent, ForkEvent};

use super::{wall_time, Session, ThreadInfo};
use crate::proc::scope::Scope;
use crate::{
    detect::procexit::host_exit_worth_an_alert,
    detect::thread_exits::{death_worth_an_alert, ThreadExitEvent},
    kernel::events::comm_str,
    output::alert::{self, AlertDetail},
};

/// How long a thread's exit is kept to match a joiner woken after the exit event was read.
const RECENT_EXIT_NS: u64 = 3_000_000_000;

impl Session {
    pub(super) fn on_fork(&mut self, f: &ForkEvent) {
        let created_by = self
            .stacks
            .resolve_snapshot(&self.probes, f.tgid, &f.creator, f.stack_id);
        self.exits
            .thread_created(f.tgid, f.child_tid, f.time_ns, created_by);
    }

    pub(super) fn on_exit(&mut self, e: &ExitEvent) {
        let comm = comm_str(&e.comm);
        if e.group_dead == 0 {
            self.threads.insert(
                e.tid,
                ThreadInfo {
                    tgid: e.tgid,
                    comm: comm.clone(),
                },
            );
            self.process_exits
                .thread_exited(e.tgid, e.tid, e.syscall, e.arg0);
            let via_exit = e.syscall == sysno::EXIT as i64;
            self.exits.thread_exited(ThreadExitEvent {
                tgid: e.tgid,
                tid: e.tid,
                comm,
                time_ns: e.time_ns,
                via_exit_syscall: via_exit,
                exit_code: if via_exit { (e.arg0 & 0xff) as i32 } else { 0 },
                signal: None,
            });
            self.recent_exits.push((e.tgid, e.tid, e.time_ns));
            if self.probes.take_joined(e.tid) {
                self.exits.joiner_waiting(e.tgid, e.tid);
            }
            return;
        }
        let end = self
            .process_exits
            .process_ended(e.tgid, e.tid, e.syscall, e.arg0);
        self.exits.process_exited(e.tgid, e.time_ns);
        let message = self.go_process_ended(e.tgid, e.time_ns);
        let signal = end.signal.map(alert::signal_name);
        if self.exit_worth_an_alert(end.exit_code, signal.as_deref(), message.is_some()) {
            let by_comm = self
                .thread_comm(e.tgid, end.by_tid)
                .unwrap_or_else(|| comm.clone());
            let a = self.alert_with_comm(
                wall_time(e.time_ns),
                e.tgid,
                end.by_tid,
                by_comm,
                Vec::new(),
                AlertDetail::ProcessExit(alert::ProcessExit {
                    exit_code: end.exit_code,
                    signal,
                    by_tid: end.by_tid,
                    message,
                }),
            );
            self.emit(a);
        }
        match self.scope {
            Scope::Process(pid) if pid == e.tgid => self.target_gone = true,
            _ => self.drop_target(e.tgid),
        }
    }

    fn exit_worth_an_alert(
        &self,
        exit_code: Option<i32>,
        signal: Option<&str>,
        go_fatal: bool,
    ) -> bool {
        match &self.scope {
            Scope::Process(_) => true,
            Scope::Host(filter) => {
                host_exit_worth_an_alert(!filter.is_everything(), exit_code, signal, go_fatal)
            }
        }
    }

    pub(super) fn poll_thread_exits(&mut self) {
        let now = crate::util::clock::monotonic_ns();
        // A joiner may have been woken by the exit after the exit event was read.
        let recent = std::mem::take(&mut self.recent_exits);
        for (tgid, tid, t) in recent {
            if self.probes.take_joined(tid) {
                self.exits.joiner_waiting(tgid, tid);
            }
            if now.saturating_sub(t) < RECENT_EXIT_NS {
                self.recent_exits.push((tgid, tid, t));
            }
        }
        for d in self.exits.poll(now) {
            if !self.thread_exit_worth_an_alert(d.tgid, d.time_ns) {
                if let Some(m) = &self.opts.metrics {
                    m.thread_deaths(d.tgid, &self.process_name(d.tgid), 1);
                }
                continue;
            }
            let a = self.alert_with_comm(
                wall_time(d.time_ns),
                d.tgid,
                d.tid,
                d.comm,
                Vec::new(),
                AlertDetail::ThreadExit(alert::ThreadExit {
                    exit_code: d.exit_code,
                    signal: d.signal.map(alert::signal_name),
                    lifetime_ns: d.lifetime_ns,
                    created_by: d.created_by,
                    count: d.count,
                }),
            );
            self.emit(a);
        }
    }
}

impl Session {
    /// See [`death_worth_an_alert`].
    fn thread_exit_worth_an_alert(&self, pid: u32, time_ns: u64) -> bool {
        let whole_host = matches!(&self.scope, Scope::Host(filter) if filter.is_everything());
        let started = self.watched.get(&pid).and_then(|t| t.start_ns);
        death_worth_an_alert(whole_host, started, time_ns)
    }
}
