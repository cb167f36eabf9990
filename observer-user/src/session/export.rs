//! The session's side of `--alertmanager`: what it knows about the conditions of ongoing alerts
//! (the waits going on, stalled goroutines, processes still observed), told to the sink after
//! each scan, and the flush at the end.

use std::collections::HashSet;

use super::{Session, SessionOptions};
use crate::output::alertmanager::{Alertmanager, Liveness};

pub(super) fn alertmanager(opts: &SessionOptions) -> Option<Alertmanager> {
    (!opts.alertmanager.is_empty())
        .then(|| Alertmanager::start(&opts.alertmanager, opts.metrics.clone(), opts.quiet))
}

struct Now<'a> {
    session: &'a Session,
    waits: HashSet<(u32, u64)>,
}

impl Liveness for Now<'_> {
    fn waits(&self) -> &HashSet<(u32, u64)> {
        &self.waits
    }

    fn goroutine_stalled(&self, pid: u32, goid: u64) -> bool {
        self.session
            .watched
            .get(&pid)
            .and_then(|t| t.go.as_ref())
            .is_some_and(|g| g.is_stalled(goid))
    }

    fn process_live(&self, pid: u32) -> bool {
        self.session.watched.contains_key(&pid)
            && !(self.session.target_gone && self.session.single_pid() == Some(pid))
    }
}

impl Session {
    /// After a scan: `waits` are the lock and uninterruptible waits going on (tid, start).
    pub(super) fn export_update(&mut self, waits: HashSet<(u32, u64)>) {
        let Some(mut am) = self.alertmanager.take() else {
            return;
        };
        am.update(&Now {
            session: self,
            waits,
        });
        self.alertmanager = Some(am);
    }

    /// Posts the last alerts (bounded in time) and says what could not be delivered.
    pub(super) fn finish_export(&mut self) {
        let Some(am) = self.alertmanager.as_mut() else {
            return;
        };
        for note in am.finish() {
            if !self.opts.quiet {
                crate::say!("observer: {note}");
            }
        }
    }
}
