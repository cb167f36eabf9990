//! Goroutine-level events and scans for the Go programs among the targets.

use observer_common::{AggValue, GoAggKey, GoPanicEvent, GoSampleKey, GoWaitEvent};

use super::{now_time, wall_time, Session};
use crate::util::{clock::monotonic_ns, duration::duration_ns};
use crate::{
    detect::gowatch::{GoAlert, GoDrained, GoFinding, GoProfile},
    output::alert::{self, AlertDetail},
    output::metrics::WaitKind,
    output::profile::BlockedProfile,
    stacks::frame::Frame,
};

/// How often the park rate is checked, at most.
const PARK_RATE_PERIOD_S: f64 = 0.5;

impl Session {
    pub(super) fn on_go_wait(&mut self, w: &GoWaitEvent) {
        let process = self.process_name(w.tgid);
        if let Some(m) = &self.opts.metrics {
            m.wait(w.tgid, &process, WaitKind::Goroutine, 1, w.duration_ns);
        }
        let Some(go) = self.watched.get_mut(&w.tgid).and_then(|t| t.go.as_mut()) else {
            return;
        };
        let mut profile = GoroutineColumn {
            folded: &mut self.folded,
            process: &process,
        };
        let alert = go.on_wait(w, &self.probes, &mut self.stacks, &mut profile);
        if let Some(a) = alert {
            self.emit_go(w.tgid, a);
        }
    }

    pub(super) fn on_go_panic(&mut self, p: &GoPanicEvent) {
        if let Some(go) = self.watched.get_mut(&p.tgid).and_then(|t| t.go.as_mut()) {
            go.on_panic(p, &self.probes, &mut self.stacks);
        }
    }

    pub(super) fn on_go_recovered(&mut self, p: &GoPanicEvent) {
        let alert = self
            .watched
            .get_mut(&p.tgid)
            .and_then(|t| t.go.as_mut())
            .and_then(|go| go.on_recovered(p));
        if let Some(a) = alert {
            self.emit_go(p.tgid, a);
        }
    }

    pub(super) fn on_go_fatal(&mut self, p: &GoPanicEvent) {
        if let Some(go) = self.watched.get_mut(&p.tgid).and_then(|t| t.go.as_mut()) {
            go.on_fatal(p);
        }
    }

    /// The fatal message of a Go process that is exiting, and its panics never recovered.
    pub(super) fn go_process_ended(&mut self, pid: u32, time_ns: u64) -> Option<String> {
        let go = self.watched.get_mut(&pid).and_then(|t| t.go.as_mut())?;
        let message = go.exit_message();
        let alerts = go.unrecovered(time_ns, true);
        for a in alerts {
            self.emit_go(pid, a);
        }
        message
    }

    /// Takes the per-park Go probes off a target that parks goroutines faster than the limit:
    /// their uprobe traps would then cost it more than observation is worth. Each Go process
    /// is judged by its own park count (kept by the kernel program per process). The panic,
    /// fatal-error and recovery probes stay: they fire per rare event.
    fn guard_park_rate(&mut self) {
        if self.opts.go_max_parks == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let mut over = Vec::new();
        for (&pid, t) in self
            .watched
            .iter_mut()
            .filter(|(_, t)| t.go.is_some() && !t.go_parks_off)
        {
            let Some(parks) = self.probes.go_parks(pid) else {
                continue;
            };
            let Some((since, at)) = t.park_rate_mark else {
                t.park_rate_mark = Some((now, parks));
                continue;
            };
            let elapsed = now.duration_since(since).as_secs_f64();
            if elapsed < PARK_RATE_PERIOD_S {
                continue;
            }
            let rate = parks.saturating_sub(at) as f64 / elapsed;
            t.park_rate_mark = Some((now, parks));
            if rate > self.opts.go_max_parks as f64 {
                over.push((pid, rate));
            }
        }
        for (pid, rate) in over {
            self.probes.stop_go_parks(pid);
            if let Some(t) = self.watched.get_mut(&pid) {
                t.go_parks_off = true;
            }
            let note = format!(
                "parks {rate:.0} goroutines/s, over --go-max-parks {}: goroutine park probes \
                 taken off (each park costs it two uprobe traps)",
                self.opts.go_max_parks
            );
            self.degraded_one_off(crate::detect::degraded::Reason::GoProbeBudget, pid, note);
        }
    }

    /// Goroutine stalls, leaks, and panics that were never recovered.
    pub(super) fn scan_goroutines(&mut self) {
        self.guard_park_rate();
        self.snapshot_goroutines();
        let now = monotonic_ns();
        let stall_ns = duration_ns(self.opts.stall_after);
        let pids = self.go_pids();
        for pid in pids {
            let Some(t) = self.watched.get_mut(&pid) else {
                continue;
            };
            // Per-park probes off: the kernel's parked table is empty, the snapshots rule.
            let from_kernel = !t.go_parks_off;
            let Some(go) = t.go.as_mut() else {
                continue;
            };
            let mut alerts = if from_kernel {
                go.scan(now, stall_ns, &self.probes, &mut self.stacks)
            } else {
                Vec::new()
            };
            alerts.extend(go.unrecovered(now, false));
            for a in alerts {
                self.emit_go(pid, a);
            }
        }
    }

    /// Short goroutine waits summed in the kernel, into the profile (those of processes no
    /// longer watched are dropped with the map entries).
    pub(super) fn drain_go_aggregates(
        &mut self,
        totals: &[(GoAggKey, AggValue)],
        samples: &[(GoSampleKey, AggValue)],
    ) {
        let pids = self.go_pids();
        for pid in pids {
            let process = self.process_name(pid);
            let Some(go) = self.watched.get_mut(&pid).and_then(|t| t.go.as_mut()) else {
                continue;
            };
            let mut profile = GoroutineColumn {
                folded: &mut self.folded,
                process: &process,
            };
            go.drain_aggregates(
                GoDrained { totals, samples },
                &mut self.probes,
                &mut self.stacks,
                &mut profile,
            );
        }
    }

    /// Targets with the goroutine probes on.
    fn go_pids(&self) -> Vec<u32> {
        self.watched
            .iter()
            .filter(|(_, t)| t.go.is_some())
            .map(|(p, _)| *p)
            .collect()
    }

    pub(super) fn emit_go(&mut self, pid: u32, a: GoAlert) {
        let time = a.time_ns.map(wall_time).unwrap_or_else(now_time);
        let mut alert = self.alert(time, pid, a.tid, a.stack, alert_detail(a.finding));
        for (field, frames) in a.more_frames {
            alert.keep_frames(field, frames);
        }
        self.emit(alert);
    }
}

/// Goroutine blocked time in the profile: one "thread" column for all goroutines of the
/// process (goids would make every stack unique).
struct GoroutineColumn<'a> {
    folded: &'a mut BlockedProfile,
    process: &'a str,
}

impl GoProfile for GoroutineColumn<'_> {
    fn add(&mut self, frames: &[Frame], ns: u64, count: u64) {
        self.folded
            .add_many_frames(self.process, "goroutines", frames, ns, count);
    }
}

/// The alert of a goroutine finding.
fn alert_detail(finding: GoFinding) -> AlertDetail {
    match finding {
        GoFinding::Wait {
            goid,
            wait_reason,
            duration_ns,
            created_by,
            waker_goid,
            waker_stack,
        } => AlertDetail::GoroutineWait(alert::GoroutineWait {
            goid,
            wait_reason,
            duration_ns,
            created_by,
            waker_goid,
            waker_stack,
        }),
        GoFinding::Stall {
            goid,
            wait_reason,
            blocked_ns,
            created_by,
        } => AlertDetail::GoroutineStall(alert::GoroutineStall {
            goid,
            wait_reason,
            blocked_ns,
            created_by,
        }),
        GoFinding::Leak {
            created_by,
            wait_reason,
            count,
            growth,
            window_ns,
        } => AlertDetail::GoroutineLeak(alert::GoroutineLeak {
            created_by,
            wait_reason,
            count,
            growth,
            window_ns,
        }),
        GoFinding::Panic {
            goid,
            message,
            recovered,
        } => AlertDetail::GoPanic(alert::GoPanic {
            goid,
            message,
            recovered,
        }),
    }
}
