//! Short waits in the profile under full stacks: the kernel's sampled short waits
//! (`ShortSampleEvent`) are unwound with `.eh_frame` as they arrive, and each drain of the
//! kernel's exact sums shares them among those stacks (`output::sampled_stacks`).

use observer_common::{lock_kind, wait_class, AggKey, AggValue, ShortSampleEvent};

use super::{class_frame, Session};
use crate::kernel::probes::Counters;
use crate::output::profile::Category;
use crate::output::sampled_stacks::SampledStacks;
use crate::stacks::frame::Frame;

#[derive(Default)]
pub(super) struct ShortStacks {
    samples: SampledStacks<AggKey, Vec<Frame>>,
    /// Short waits put in the profile under sampled full stacks, and under frame-pointer
    /// stacks only (their key was never sampled).
    waits_full: u64,
    waits_partial: u64,
}

/// The outermost frame of a short wait's stack that was never sampled: only its frame-pointer
/// stack is known, which stops inside code built without frame pointers, so its callers may
/// be missing.
pub(super) const PARTIAL_STACK: &str = "[frame pointers only]";

impl Session {
    pub(super) fn on_short_sample(&mut self, s: &ShortSampleEvent) {
        if !self.watched.contains_key(&s.key.tgid) || s.waiter.sp == 0 || s.waiter.len == 0 {
            return;
        }
        let frames = self
            .stacks
            .resolve_snapshot_frames(&self.probes, s.key.tgid, &s.waiter, -1);
        if !frames.is_empty() {
            self.short_stacks.samples.add(s.key, frames, s.duration_ns);
        }
    }

    /// One key of the kernel's short-wait sums into the profile: shared among its sampled
    /// stacks, or under its frame-pointer stack, marked, when it was never sampled. Innermost
    /// frame: the lock's kind for a lock wait, the wait class with `--report-idle`. `lock`:
    /// the key's waits were judged lock waits.
    pub(super) fn add_short_waits(
        &mut self,
        key: &AggKey,
        value: &AggValue,
        process: &str,
        lock: bool,
    ) {
        let category = category(key.class, lock);
        let comm = crate::kernel::events::comm_str(&key.comm);
        let label = wait_label(key.class, key.lock_kind, self.opts.report_idle);
        let with_label = |mut frames: Vec<Frame>| {
            if let Some(l) = &label {
                frames.insert(0, l.clone());
            }
            frames
        };
        let shares = self
            .short_stacks
            .samples
            .split(key, value.count, value.total_ns);
        if let Some(shares) = shares {
            self.short_stacks.waits_full += value.count;
            for share in shares {
                let frames = with_label(share.stack);
                self.profile_add(
                    key.tgid,
                    category,
                    process,
                    &comm,
                    &frames,
                    share.ns,
                    share.count,
                );
            }
            return;
        }
        let mut frames = self
            .stacks
            .resolve_id_frames(&self.probes, key.tgid, key.stack_id);
        if frames.is_empty() {
            frames.push(Frame::named("[unknown]"));
        }
        frames.push(Frame::named(PARTIAL_STACK));
        self.short_stacks.waits_partial += value.count;
        let frames = with_label(frames);
        self.profile_add(
            key.tgid,
            category,
            process,
            &comm,
            &frames,
            value.total_ns,
            value.count,
        );
    }

    /// After a drain: old unused samples go, and so does all about ended processes.
    pub(super) fn end_short_drain(&mut self) {
        self.short_stacks.samples.end_drain();
        let watched: std::collections::HashSet<u32> = self.watched.keys().copied().collect();
        self.short_stacks
            .samples
            .retain(|k| watched.contains(&k.tgid));
    }

    /// The summary's line on how the profile's short waits got their stacks; empty when no
    /// short wait went into the profile.
    pub(super) fn short_stacks_note(&self, c: &Counters) -> String {
        let s = &self.short_stacks;
        let waits = s.waits_full + s.waits_partial;
        if waits == 0 {
            return String::new();
        }
        format!(
            "profile stacks: {} of {} short waits under sampled full stacks, {} under frame-pointer \
             stacks only ({PARTIAL_STACK}); {} samples taken, {} lost (ring buffer busy)\n",
            s.waits_full, waits, s.waits_partial, c.short_samples, c.short_samples_lost
        )
    }
}

/// The profile category of a thread's wait of `class`, judged a lock wait (`lock`) or not:
/// uninterruptible sleep is the kernel's, a wait for a held lock blocked, anything else idle.
pub(super) fn category(class: u32, lock: bool) -> Category {
    if class == wait_class::UNINTERRUPTIBLE {
        Category::Kernel
    } else if lock {
        Category::Lock
    } else {
        Category::Idle
    }
}

/// The innermost frame that says what a wait in the profile waited for: `[lock: KIND]` for a
/// lock wait (`[lock]` when the kind is not known), the class (`[futex]`, `[sleep]`, ...) with
/// `--report-idle`, nothing otherwise.
pub(super) fn wait_label(class: u32, kind: u32, report_idle: bool) -> Option<Frame> {
    if class == wait_class::LOCK {
        return Some(Frame::named(lock_frame(kind)));
    }
    report_idle.then(|| Frame::named(class_frame(class)))
}

fn lock_frame(kind: u32) -> String {
    if kind == lock_kind::UNKNOWN || kind >= lock_kind::COUNT {
        class_frame(wait_class::LOCK).to_string()
    } else {
        format!("[lock: {}]", lock_kind::name(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_lock_kind_or_the_class() {
        let name = |f: Option<Frame>| f.map(|f| f.name.to_string());
        assert_eq!(
            name(wait_label(wait_class::LOCK, lock_kind::RUST_MUTEX, false)).as_deref(),
            Some("[lock: rust std Mutex]")
        );
        assert_eq!(
            name(wait_label(wait_class::LOCK, lock_kind::UNKNOWN, true)).as_deref(),
            Some("[lock]")
        );
        assert_eq!(
            name(wait_label(wait_class::SLEEP, 0, true)).as_deref(),
            Some("[sleep]")
        );
        assert_eq!(wait_label(wait_class::SLEEP, 0, false), None);
    }

    #[test]
    fn categories_follow_the_class_and_the_verdict() {
        assert_eq!(category(wait_class::LOCK, true), Category::Lock);
        // A lock-class wait judged idle (a Go process, a stale owner) is idle time.
        assert_eq!(category(wait_class::LOCK, false), Category::Idle);
        assert_eq!(
            category(wait_class::UNINTERRUPTIBLE, false),
            Category::Kernel
        );
        assert_eq!(category(wait_class::SLEEP, false), Category::Idle);
        assert_eq!(category(wait_class::FUTEX, false), Category::Idle);
    }
}
