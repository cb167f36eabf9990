//! Goroutine-level events and scans for the Go programs among the targets.

use observer_common::{AggValue, GoAggKey, GoPanicEvent, GoSampleKey, GoWaitEvent};

use super::{now_time, wall_time, Session};
use crate::util::{clock::monotonic_ns, duration::duration_ns};
use crate::{
    detect::goduty::DutyAction,
    detect::gowatch::{GoAlert, GoDrained, GoFinding, GoProfile, ReasonClass},
    golang::GoLabels,
    output::alert::{self, AlertDetail},
    output::metrics::WaitKind,
    output::profile::{BlockedProfile, Category},
    stacks::frame::Frame,
};

impl Session {
    pub(super) fn on_go_wait(&mut self, w: &GoWaitEvent) {
        let process = self.process_name(w.tgid);
        if let Some(m) = &self.opts.metrics {
            m.wait(w.tgid, &process, WaitKind::Goroutine, w.duration_ns);
        }
        let container = self.container_of(w.tgid);
        let Some(go) = self.watched.get_mut(&w.tgid).and_then(|t| t.go.as_mut()) else {
            return;
        };
        let mut profile = GoroutineColumn {
            folded: &mut self.folded,
            otlp: self.otlp.as_mut().map(|o| (w.tgid, o)),
            process: &process,
            container,
            blocked_ns: 0,
        };
        let sync = go.is_sync_reason(w.reason);
        let alerts = go.on_wait(w, &self.probes, &mut self.stacks, &mut profile);
        let blocked_ns = profile.blocked_ns;
        self.live_state.blocked(w.tgid, blocked_ns);
        self.live_state.long_waits.goroutine(sync);
        for a in alerts {
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

    /// Goroutine hold episodes that are over (every open one with `all`: the session ends).
    pub(super) fn flush_go_holds(&mut self, all: bool) {
        let now = monotonic_ns();
        for pid in self.go_pids() {
            let Some(go) = self.watched.get_mut(&pid).and_then(|t| t.go.as_mut()) else {
                continue;
            };
            for a in go.flush_holds(now, all) {
                self.emit_go(pid, a);
            }
        }
    }

    /// The fatal message of a Go process that is exiting, and its panics never recovered.
    pub(super) fn go_process_ended(&mut self, pid: u32, time_ns: u64) -> Option<String> {
        let go = self.watched.get_mut(&pid).and_then(|t| t.go.as_mut())?;
        let message = go.exit_message();
        let mut alerts = go.flush_holds(u64::MAX, true);
        alerts.extend(go.unrecovered(time_ns, true));
        for a in alerts {
            self.emit_go(pid, a);
        }
        message
    }

    /// Whether some Go process's per-park probes are under a budget.
    pub(super) fn go_duty_active(&self) -> bool {
        self.watched.values().any(|t| t.go_duty.is_some())
    }

    /// Switches the per-park Go probes on and off to keep each process's trap cost within
    /// --go-probe-budget (see `detect::goduty`). The panic, fatal-error and recovery probes
    /// stay whatever happens: they fire per rare event.
    pub(super) fn tick_go_duty(&mut self) {
        let now = monotonic_ns();
        let mut actions = Vec::new();
        for (&pid, t) in self.watched.iter_mut() {
            let Some(duty) = t.go_duty.as_mut() else {
                continue;
            };
            let parks = self.probes.go_parks(pid).unwrap_or(0);
            let was_cycling = duty.cycling();
            match duty.tick(now, parks) {
                DutyAction::Nothing => {}
                action => actions.push((pid, action, !was_cycling, duty.duty())),
            }
        }
        for (pid, action, first, duty) in actions {
            match action {
                DutyAction::TurnOff => {
                    self.probes.stop_go_parks(pid);
                    if first {
                        let note = format!(
                            "parks goroutines faster than --go-probe-budget allows: park probes \
                             on {:.1}% of the time from now on (their profile scaled up)",
                            duty * 100.0
                        );
                        self.degraded_one_off(
                            crate::detect::degraded::Reason::GoProbeBudget,
                            pid,
                            note,
                        );
                    }
                }
                DutyAction::TurnOn => {
                    if let Err(e) = self.probes.resume_go_parks(pid) {
                        crate::say!(
                            "observer: pid {pid}: goroutine park probes could not be put back \
                             ({e}): goroutines followed from memory snapshots only"
                        );
                        if let Some(t) = self.watched.get_mut(&pid) {
                            t.go_duty = None;
                            t.go_parks_off = true;
                        }
                    }
                }
                DutyAction::Nothing => {}
            }
        }
    }

    /// Goroutine stalls, leaks, and panics that were never recovered.
    pub(super) fn scan_goroutines(&mut self) {
        self.snapshot_goroutines();
        self.flush_go_holds(false);
        let now = monotonic_ns();
        let stall_ns = duration_ns(self.opts.stall_after);
        let pids = self.go_pids();
        for pid in pids {
            let Some(t) = self.watched.get_mut(&pid) else {
                continue;
            };
            // Per-park probes off at times: the kernel's parked table is partial, the
            // snapshots rule.
            let from_kernel = !t.follows_goroutines_from_memory();
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
        self.count_go_short_waits(totals);
        let pids = self.go_pids();
        for pid in pids {
            let process = self.process_name(pid);
            let Some(t) = self.watched.get_mut(&pid) else {
                continue;
            };
            let probes_on_share = match t.go_duty.as_mut() {
                Some(d) => {
                    let share = d.take_on_share(monotonic_ns());
                    if share < 1.0 {
                        t.go_profile_scaled = true;
                    }
                    share
                }
                None => 1.0,
            };
            let Some(go) = t.go.as_mut() else {
                continue;
            };
            let mut profile = GoroutineColumn {
                folded: &mut self.folded,
                otlp: self.otlp.as_mut().map(|o| (pid, o)),
                process: &process,
                container: t.identity.clone(),
                blocked_ns: 0,
            };
            go.drain_aggregates(
                GoDrained {
                    totals,
                    samples,
                    probes_on_share,
                },
                &mut self.probes,
                &mut self.stacks,
                &mut profile,
            );
            let blocked_ns = profile.blocked_ns;
            self.live_state.blocked(pid, blocked_ns);
        }
    }

    /// Short goroutine waits in the metrics, exact (not scaled for the time the park probes
    /// were off: the long ones of that time are not counted either), binned by the kernel.
    fn count_go_short_waits(&self, totals: &[(GoAggKey, AggValue)]) {
        let Some(m) = &self.opts.metrics else { return };
        for (key, value) in totals {
            if self.watched.contains_key(&key.tgid) {
                let process = self.process_name(key.tgid);
                m.waits_summed(key.tgid, &process, WaitKind::Goroutine, value);
            }
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
    /// The OTLP export's interval profile, with the process's pid.
    otlp: Option<(u32, &'a mut crate::output::otlp::OtlpExporter)>,
    process: &'a str,
    container: crate::proc::container::ContainerIdentity,
    /// Blocked (not idle) time added, for the live view's per-process rate.
    blocked_ns: u64,
}

impl GoProfile for GoroutineColumn<'_> {
    fn add(
        &mut self,
        frames: &[Frame],
        ns: u64,
        count: u64,
        class: ReasonClass,
        labels: &GoLabels,
    ) {
        // Sync waits (mutexes, wait groups, semaphores) are blocked time; select, channels,
        // IO wait, sleeps and the runtime's own parks are idle, as a thread's idle waits.
        let category = match class {
            ReasonClass::Sync => Category::Lock,
            ReasonClass::Channel | ReasonClass::Idle => Category::Idle,
        };
        if !category.is_idle() {
            self.blocked_ns = self.blocked_ns.saturating_add(ns);
        }
        self.folded.add_labeled_frames(
            category,
            (self.process, &self.container),
            "goroutines",
            frames,
            (ns, count),
            labels,
        );
        if let Some((pid, o)) = self.otlp.as_mut() {
            o.profile_sample(
                *pid,
                &self.container,
                category,
                self.process,
                "goroutines",
                frames,
                ns,
                count,
            );
        }
    }
}

/// The alert of a goroutine finding.
fn alert_detail(finding: GoFinding) -> AlertDetail {
    match finding {
        GoFinding::Wait(e) => AlertDetail::GoroutineWait(alert::GoroutineWait {
            goid: e.goid,
            wait_reason: e.wait_reason,
            duration_ns: e.duration_ns,
            created_by: e.created_by,
            waker_goid: e.waker_goid,
            waker_stack: e.waker_stack,
            lock: e.lock,
            hold_ns: e.hold_ns,
            waiters: e.waiters,
            total_wait_ns: e.total_wait_ns,
            waiter_stacks: e
                .waiter_stacks
                .into_iter()
                .map(|(stack, count, longest_ns, labels)| alert::GoWaiterStack {
                    stack,
                    count,
                    longest_ns,
                    labels,
                })
                .collect(),
            waiter_stacks_omitted: e.waiter_stacks_omitted,
            likely_holder: e.likely_holder.into(),
            labels: e.labels,
        }),
        GoFinding::Stall {
            goid,
            wait_reason,
            blocked_ns,
            created_by,
            likely_holder,
            labels,
        } => AlertDetail::GoroutineStall(alert::GoroutineStall {
            goid,
            wait_reason,
            blocked_ns,
            created_by,
            likely_holder: likely_holder.into(),
            labels,
        }),
        GoFinding::Leak {
            created_by,
            wait_reason,
            count,
            growth,
            window_ns,
            labels,
        } => AlertDetail::GoroutineLeak(alert::GoroutineLeak {
            created_by,
            wait_reason,
            count,
            growth,
            window_ns,
            labels,
        }),
        GoFinding::Panic {
            goid,
            message,
            recovered,
            labels,
        } => AlertDetail::GoPanic(alert::GoPanic {
            goid,
            message,
            recovered,
            labels,
        }),
    }
}
