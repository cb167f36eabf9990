//! The blocked-time profile of a session or a recording: blocked nanoseconds and wait counts
//! per process, thread and stack, merged. The exporters read it: folded stacks
//! ([`crate::output::folded`]), pprof, SVG, recordings, the live view and the summary
//! ([`BlockedProfile::top`]).
//!
//! Names are sanitized for the folded readers as they are added (`;` becomes `:`, line breaks
//! and other control characters spaces, empty names `[unknown]`), so every exporter shows the
//! same names.
//!
//! Frames keep their normalized addresses (module, file offset) for the exporters that want
//! them (pprof, recordings): stacks are merged by name *and* address, so one function reached
//! from two call sites without line information stays two stacks in [`BlockedProfile::entries`].
//! The folded text and [`BlockedProfile::top`] are by name only and merge them again.
//!
//! Every sample has a [`Category`]: time blocked on a lock, time in uninterruptible sleep in
//! the kernel, or idle time (waiting for work or for time). Blocked time is what the exporters
//! lead with; idle time is kept apart in each (a root frame `[idle]` in folded stacks and SVG,
//! its own sample types in pprof, its own line in the summary), so a thread pool waiting for
//! requests cannot hide the one lock everybody queues on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::proc::container::ContainerIdentity;
use crate::stacks::frame::{self, Frame};

/// The process a sample belongs to: its name and, in a container, its container and pod (pprof
/// labels; the folded text and the summaries show the name only). A bare name converts into one
/// outside containers.
#[derive(Debug, Clone, Copy)]
pub struct ProcessRef<'a> {
    pub name: &'a str,
    pub container: Option<&'a ContainerIdentity>,
}

impl<'a> From<&'a str> for ProcessRef<'a> {
    fn from(name: &'a str) -> Self {
        ProcessRef {
            name,
            container: None,
        }
    }
}

impl<'a> From<&'a String> for ProcessRef<'a> {
    fn from(name: &'a String) -> Self {
        name.as_str().into()
    }
}

impl<'a> From<(&'a str, &'a ContainerIdentity)> for ProcessRef<'a> {
    fn from((name, container): (&'a str, &'a ContainerIdentity)) -> Self {
        ProcessRef {
            name,
            container: Some(container),
        }
    }
}

/// What a sample's time was spent on. C threads and Go goroutines map to the same three.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Waiting for a lock another thread or goroutine holds: futex lock waits, Go `sync.*`
    /// and semaphore waits.
    #[default]
    Lock,
    /// Uninterruptible sleep in the kernel (D state): disk, page faults, kernel locks.
    Kernel,
    /// Waiting for work or for time: condition variables, joins, sleeps, poll, reads (with
    /// `--report-idle`); Go `select`, channels, `IO wait`, sleeps, GC and scheduler parks.
    Idle,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Lock => "lock",
            Category::Kernel => "kernel",
            Category::Idle => "idle",
        }
    }

    pub fn is_idle(self) -> bool {
        self == Category::Idle
    }
}

/// The root frame of idle stacks in folded stacks and SVG.
pub const IDLE_ROOT: &str = "[idle]";

/// Blocked-time profile keyed by process, thread, stack and category.
#[derive(Debug, Clone, Default)]
pub struct BlockedProfile {
    pub(super) stacks: HashMap<Key, Totals>,
    /// Keys that carry goroutine labels: bounded by [`MAX_LABELED_STACKS`].
    labeled: usize,
}

/// Stacks kept apart by their goroutine labels, at most: a label per request would otherwise
/// grow the profile with every request. Past it, samples are added without their labels.
pub const MAX_LABELED_STACKS: usize = 4096;

/// Sanitized names; ordered like the folded lines (process, thread, outermost frame first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Key {
    pub(super) process: String,
    pub(super) thread: String,
    /// Outermost first.
    pub(super) frames: Vec<Frame>,
    pub(super) category: Category,
    /// Last, so that the order of the entries stays by process, thread and frames.
    pub(super) container: ContainerIdentity,
    /// Goroutine pprof labels of the samples (empty for threads and unlabeled waits).
    pub(super) labels: Vec<(String, String)>,
}

impl Key {
    fn new(
        category: Category,
        process: ProcessRef<'_>,
        thread: &str,
        frames_innermost_first: &[Frame],
    ) -> Key {
        Key {
            process: sanitize(process.name),
            thread: sanitize(thread),
            frames: frames_innermost_first
                .iter()
                .rev()
                .map(sanitize_frame)
                .collect(),
            category,
            container: process.container.cloned().unwrap_or_default(),
            labels: Vec::new(),
        }
    }

    /// The key without addresses, as [`TopStack`] shows it.
    fn by_name(&self) -> (String, String, Vec<String>) {
        (
            self.process.clone(),
            self.thread.clone(),
            self.frames.iter().map(|f| f.name.to_string()).collect(),
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Totals {
    pub(super) weight_ns: u64,
    count: u64,
}

/// One merged stack with its frames and their addresses, for exporters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEntry {
    pub process: String,
    pub thread: String,
    /// Innermost first.
    pub frames: Vec<Frame>,
    /// Summed weight (blocked nanoseconds).
    pub weight_ns: u64,
    /// Number of samples (waits) merged into this stack.
    pub count: u64,
    pub category: Category,
    /// The process's container and pod (both `None` outside containers).
    pub container: ContainerIdentity,
}

/// One merged stack with its totals, for summaries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopStack {
    pub process: String,
    pub thread: String,
    /// Innermost first.
    pub frames: Vec<String>,
    /// Summed weight (blocked nanoseconds).
    pub weight_ns: u64,
    /// Number of samples (waits) merged into this stack.
    pub count: u64,
}

impl BlockedProfile {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one lock-wait sample; `frames_innermost_first` is as symbolized (innermost first).
    pub fn add(
        &mut self,
        process: &str,
        thread: &str,
        frames_innermost_first: &[String],
        weight_ns: u64,
    ) {
        self.add_many(process, thread, frames_innermost_first, weight_ns, 1);
    }

    /// Like [`Self::add`] for `count` waits summed elsewhere (the kernel's aggregates).
    pub fn add_many(
        &mut self,
        process: &str,
        thread: &str,
        frames_innermost_first: &[String],
        weight_ns: u64,
        count: u64,
    ) {
        let frames = frame::from_names(frames_innermost_first);
        self.add_many_frames(Category::Lock, process, thread, &frames, weight_ns, count);
    }

    /// Adds one sample whose frames keep their addresses (innermost first).
    pub fn add_frames<'a>(
        &mut self,
        category: Category,
        process: impl Into<ProcessRef<'a>>,
        thread: &str,
        frames_innermost_first: &[Frame],
        weight_ns: u64,
    ) {
        self.add_many_frames(
            category,
            process,
            thread,
            frames_innermost_first,
            weight_ns,
            1,
        );
    }

    /// Like [`Self::add_frames`] for `count` waits summed elsewhere.
    pub fn add_many_frames<'a>(
        &mut self,
        category: Category,
        process: impl Into<ProcessRef<'a>>,
        thread: &str,
        frames_innermost_first: &[Frame],
        weight_ns: u64,
        count: u64,
    ) {
        let key = Key::new(category, process.into(), thread, frames_innermost_first);
        let totals = self.stacks.entry(key).or_default();
        totals.weight_ns = totals.weight_ns.saturating_add(weight_ns);
        totals.count = totals.count.saturating_add(count);
    }

    /// Like [`Self::add_many_frames`] for goroutine waits with their pprof labels, which the
    /// pprof output carries as sample labels; `(weight_ns, count)`. Other outputs merge them.
    pub fn add_labeled_frames<'a>(
        &mut self,
        category: Category,
        process: impl Into<ProcessRef<'a>>,
        thread: &str,
        frames_innermost_first: &[Frame],
        (weight_ns, count): (u64, u64),
        labels: &BTreeMap<String, String>,
    ) {
        let mut key = Key::new(category, process.into(), thread, frames_innermost_first);
        if !labels.is_empty() && self.labeled < MAX_LABELED_STACKS {
            key.labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if !self.stacks.contains_key(&key) {
                self.labeled += 1;
            }
        }
        let totals = self.stacks.entry(key).or_default();
        totals.weight_ns = totals.weight_ns.saturating_add(weight_ns);
        totals.count = totals.count.saturating_add(count);
    }

    /// Number of distinct stacks (by name and address).
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    pub fn total_weight_ns(&self) -> u64 {
        self.stacks
            .values()
            .fold(0u64, |acc, t| acc.saturating_add(t.weight_ns))
    }

    /// Blocked (lock and kernel) or idle time and waits in all.
    pub fn totals(&self, idle: bool) -> (u64, u64) {
        self.stacks
            .iter()
            .filter(|(k, _)| k.category.is_idle() == idle)
            .fold((0u64, 0u64), |(ns, n), (_, t)| {
                (ns.saturating_add(t.weight_ns), n.saturating_add(t.count))
            })
    }

    /// The `n` heaviest blocked stacks (lock and kernel waits) by name, heaviest first (ties
    /// broken by stack text, for stable output). Idle stacks are in [`Self::top_idle`].
    pub fn top(&self, n: usize) -> Vec<TopStack> {
        self.top_of(n, false)
    }

    /// The `n` heaviest idle stacks by name, heaviest first.
    pub fn top_idle(&self, n: usize) -> Vec<TopStack> {
        self.top_of(n, true)
    }

    fn top_of(&self, n: usize, idle: bool) -> Vec<TopStack> {
        let mut merged: HashMap<(String, String, Vec<String>), Totals> = HashMap::new();
        for (key, t) in &self.stacks {
            if key.category.is_idle() != idle {
                continue;
            }
            let totals = merged.entry(key.by_name()).or_default();
            totals.weight_ns = totals.weight_ns.saturating_add(t.weight_ns);
            totals.count = totals.count.saturating_add(t.count);
        }
        let mut all: Vec<_> = merged.into_iter().collect();
        all.sort_by(|a, b| {
            b.1.weight_ns
                .cmp(&a.1.weight_ns)
                .then_with(|| a.0.cmp(&b.0))
        });
        all.into_iter()
            .take(n)
            .map(|((process, thread, mut frames), t)| {
                frames.reverse();
                TopStack {
                    process,
                    thread,
                    frames,
                    weight_ns: t.weight_ns,
                    count: t.count,
                }
            })
            .collect()
    }

    /// Every merged stack, with addresses, in a stable order (process, thread, then frames
    /// outermost first), for exporters (pprof, SVG, recordings) that need the counts and the
    /// frames, not just the folded text.
    /// Goroutine waits that differ only in their labels are one entry here.
    pub fn entries(&self) -> Vec<StackEntry> {
        let mut out: Vec<StackEntry> = Vec::new();
        for (entry, _) in self.labeled_entries() {
            match out.last_mut() {
                // Sorted by key: the same stack with other labels is next to it.
                Some(last)
                    if last.process == entry.process
                        && last.thread == entry.thread
                        && last.category == entry.category
                        && last.frames == entry.frames =>
                {
                    last.weight_ns = last.weight_ns.saturating_add(entry.weight_ns);
                    last.count = last.count.saturating_add(entry.count);
                }
                _ => out.push(entry),
            }
        }
        out
    }

    /// Like [`Self::entries`], each stack once per distinct set of goroutine labels (sorted
    /// by key; empty for threads and unlabeled waits), for the pprof output.
    pub fn labeled_entries(&self) -> Vec<(StackEntry, Vec<(String, String)>)> {
        let mut all: Vec<(&Key, &Totals)> = self.stacks.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
            .map(|(key, t)| {
                let entry = StackEntry {
                    process: key.process.clone(),
                    thread: key.thread.clone(),
                    frames: key.frames.iter().rev().cloned().collect(),
                    weight_ns: t.weight_ns,
                    count: t.count,
                    category: key.category,
                    container: key.container.clone(),
                };
                (entry, key.labels.clone())
            })
            .collect()
    }
}

/// Blocked time per process id since the last [`PidDeltas::take`]: what a periodic exporter
/// (OTLP) sends every interval. Kept next to the session's whole-run profile, never instead of
/// it, so the end-of-run outputs (folded, pprof, SVG, summary) see every sample. Bounded: past
/// `max_stacks` distinct stacks in one interval, further new stacks are dropped and counted.
#[derive(Debug, Default)]
pub struct PidDeltas {
    by_pid: HashMap<u32, (String, BlockedProfile)>,
    stacks: usize,
    max_stacks: usize,
    dropped: u64,
}

/// One process's share of a [`PidDeltas::take`].
#[derive(Debug)]
pub struct PidDelta {
    pub pid: u32,
    /// The process's name (as in the profile).
    pub process: String,
    pub profile: BlockedProfile,
}

impl PidDeltas {
    pub fn new(max_stacks: usize) -> Self {
        Self {
            max_stacks,
            ..Self::default()
        }
    }

    /// Like [`BlockedProfile::add_many_frames`], for process `pid`.
    #[allow(clippy::too_many_arguments)]
    pub fn add_many_frames(
        &mut self,
        pid: u32,
        category: Category,
        process: &str,
        thread: &str,
        frames_innermost_first: &[Frame],
        weight_ns: u64,
        count: u64,
    ) {
        if self.stacks >= self.max_stacks {
            self.dropped = self.dropped.saturating_add(count);
            return;
        }
        let (_, profile) = self
            .by_pid
            .entry(pid)
            .or_insert_with(|| (sanitize(process), BlockedProfile::new()));
        let before = profile.len();
        profile.add_many_frames(
            category,
            process,
            thread,
            frames_innermost_first,
            weight_ns,
            count,
        );
        self.stacks += profile.len() - before;
    }

    /// The time gathered since the last call, by pid (ascending), and the waits dropped for
    /// the bound; starts a new interval.
    pub fn take(&mut self) -> (Vec<PidDelta>, u64) {
        let mut out: Vec<PidDelta> = std::mem::take(&mut self.by_pid)
            .into_iter()
            .map(|(pid, (process, profile))| PidDelta {
                pid,
                process,
                profile,
            })
            .collect();
        out.sort_by_key(|d| d.pid);
        self.stacks = 0;
        (out, std::mem::take(&mut self.dropped))
    }
}

/// The frame with a name the folded readers can split, keeping its address.
fn sanitize_frame(frame: &Frame) -> Frame {
    let name = &*frame.name;
    let clean = !name.is_empty()
        && name.trim() == name
        && !name.chars().any(|c| c == ';' || c.is_control());
    Frame {
        name: if clean {
            Arc::clone(&frame.name)
        } else {
            Arc::from(sanitize(name))
        },
        addr: frame.addr.clone(),
        inlined: frame.inlined,
    }
}

fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "[unknown]".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_identical_stacks_and_orders_outermost_first() {
        let mut p = BlockedProfile::new();
        let s = frames(&["__lll_lock_wait", "transfer_a_to_b (bank.c:14)", "main"]);
        p.add("bank", "worker", &s, 100);
        p.add("bank", "worker", &s, 250);
        p.add("bank", "other", &s, 5);
        assert_eq!(
            p.lines(),
            vec![
                "bank;other;main;transfer_a_to_b (bank.c:14);__lll_lock_wait 5",
                "bank;worker;main;transfer_a_to_b (bank.c:14);__lll_lock_wait 350",
            ]
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p.total_weight_ns(), 355);
    }

    #[test]
    fn sanitizes_separators() {
        let mut p = BlockedProfile::new();
        p.add(
            "a;b",
            "t\nx",
            &frames(&["std::vec<int; 3>::f", "", "line\r\nbreak"]),
            7,
        );
        let lines = p.lines();
        assert_eq!(
            lines,
            vec!["a:b;t x;line  break;[unknown];std::vec<int: 3>::f 7"]
        );
        // What flamegraph.pl/inferno do: the weight follows the last space, frames split on ';'.
        let (stack, count) = lines[0].rsplit_once(' ').unwrap();
        assert_eq!(count, "7");
        assert_eq!(stack.split(';').count(), 5);
    }

    #[test]
    fn empty_stack_still_has_process_and_thread() {
        let mut p = BlockedProfile::new();
        p.add("redis-server", "io_thd_1", &[], 9);
        assert_eq!(p.lines(), vec!["redis-server;io_thd_1 9"]);
    }

    #[test]
    fn top_returns_heaviest_first_with_counts() {
        let mut p = BlockedProfile::new();
        p.add("p", "t", &frames(&["a"]), 10);
        p.add("p", "t", &frames(&["b", "main"]), 30);
        p.add("p", "t", &frames(&["b", "main"]), 30);
        p.add("p", "t", &frames(&["c"]), 10);
        let top = p.top(2);
        assert_eq!(
            top,
            vec![
                TopStack {
                    process: "p".into(),
                    thread: "t".into(),
                    frames: frames(&["b", "main"]),
                    weight_ns: 60,
                    count: 2,
                },
                TopStack {
                    process: "p".into(),
                    thread: "t".into(),
                    frames: frames(&["a"]),
                    weight_ns: 10,
                    count: 1,
                },
            ]
        );
        assert_eq!(p.top(10).len(), 3);
        assert!(BlockedProfile::new().top(3).is_empty());
    }

    /// A pool idling for a minute does not push the one lock wait out of `top`.
    #[test]
    fn top_is_blocked_time_and_idle_time_is_apart() {
        let mut p = BlockedProfile::new();
        let idle = frame::from_names(&frames(&["[futex]", "pthread_cond_wait", "pool_wait"]));
        let lock = frame::from_names(&frames(&["[lock: pthread_mutex]", "update"]));
        let disk = frame::from_names(&frames(&["io_schedule", "fsync_log"]));
        p.add_many_frames(Category::Idle, "srv", "pool", &idle, 60_000, 900);
        p.add_frames(Category::Lock, "srv", "w", &lock, 300);
        p.add_frames(Category::Kernel, "srv", "w", &disk, 20);
        let top = p.top(1);
        assert_eq!(top[0].frames, frames(&["[lock: pthread_mutex]", "update"]));
        assert_eq!(p.top(5).len(), 2);
        let idle_top = p.top_idle(5);
        assert_eq!(idle_top.len(), 1);
        assert_eq!((idle_top[0].weight_ns, idle_top[0].count), (60_000, 900));
        assert_eq!(p.totals(false), (320, 2));
        assert_eq!(p.totals(true), (60_000, 900));
        assert_eq!(p.total_weight_ns(), 60_320);
        let cats: Vec<Category> = p.entries().iter().map(|e| e.category).collect();
        assert_eq!(cats, vec![Category::Idle, Category::Kernel, Category::Lock]);
    }

    #[test]
    fn pid_deltas_split_by_pid_restart_and_stay_bounded() {
        let mut d = PidDeltas::new(2);
        let f = frame::from_names(&frames(&["lock", "main"]));
        let g = frame::from_names(&frames(&["other"]));
        d.add_many_frames(7, Category::Lock, "bank", "w", &f, 10, 1);
        d.add_many_frames(7, Category::Lock, "bank", "w", &f, 5, 1);
        d.add_many_frames(3, Category::Idle, "srv", "t", &g, 1, 1);
        // A third distinct stack is over the bound: dropped and counted.
        d.add_many_frames(3, Category::Lock, "srv", "t", &f, 1, 4);
        let (got, dropped) = d.take();
        assert_eq!(dropped, 4);
        assert_eq!(got.iter().map(|x| x.pid).collect::<Vec<_>>(), vec![3, 7]);
        assert_eq!(got[1].process, "bank");
        assert_eq!(got[1].profile.totals(false), (15, 2));
        let (again, dropped) = d.take();
        assert!(again.is_empty() && dropped == 0);
        d.add_many_frames(9, Category::Lock, "x", "t", &f, 1, 1);
        assert_eq!(d.take().0.len(), 1);
    }

    #[test]
    fn entries_are_sorted_with_counts() {
        let mut p = BlockedProfile::new();
        p.add("b", "t", &frames(&["f"]), 1);
        p.add("a", "u", &frames(&["g", "main"]), 2);
        p.add("a", "u", &frames(&["g", "main"]), 3);
        p.add("a", "t", &frames(&[]), 4);
        let got: Vec<(String, String, Vec<String>, u64, u64)> = p
            .entries()
            .into_iter()
            .map(|e| {
                let names = frame::names(&e.frames);
                (e.process, e.thread, names, e.weight_ns, e.count)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), "t".into(), vec![], 4, 1),
                ("a".into(), "u".into(), frames(&["g", "main"]), 5, 2),
                ("b".into(), "t".into(), frames(&["f"]), 1, 1),
            ]
        );
    }

    fn at(name: &str, off: u64, inlined: bool) -> Frame {
        let module = Arc::new(crate::proc::normaddr::Module {
            path: "/bin/bank".into(),
            build_id: Some("beef".into()),
        });
        Frame {
            name: name.into(),
            addr: Some(crate::proc::normaddr::NormAddr {
                module,
                file_offset: off,
            }),
            inlined,
        }
    }

    #[test]
    fn frames_keep_addresses_and_text_merges_by_name() {
        let mut p = BlockedProfile::new();
        // One function without line info, blocked from two call sites: two stacks by address.
        let site_a = vec![at("lock", 0x10, false), at("main", 0x100, false)];
        let site_b = vec![at("lock", 0x18, false), at("main", 0x100, false)];
        p.add_frames(Category::Lock, "bank", "w", &site_a, 10);
        p.add_frames(Category::Lock, "bank", "w", &site_a, 5);
        p.add_many_frames(Category::Lock, "bank", "w", &site_b, 20, 3);
        // Names only (an old caller): a third stack, same text.
        p.add("bank", "w", &frames(&["lock", "main"]), 1);
        assert_eq!(p.len(), 3);
        assert_eq!(p.lines(), vec!["bank;w;main;lock 36"]);
        let top = p.top(5);
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].weight_ns, top[0].count), (36, 6));
        assert_eq!(top[0].frames, frames(&["lock", "main"]));

        let entries = p.entries();
        assert_eq!(entries.len(), 3);
        let with_a = entries
            .iter()
            .find(|e| e.frames == site_a)
            .expect("site a kept with its addresses");
        assert_eq!((with_a.weight_ns, with_a.count), (15, 2));
        let offsets: Vec<Option<u64>> = entries
            .iter()
            .map(|e| e.frames[0].addr.as_ref().map(|a| a.file_offset))
            .collect();
        assert!(
            offsets.contains(&Some(0x18)) && offsets.contains(&None),
            "{offsets:?}"
        );
    }

    #[test]
    fn sanitizing_keeps_addresses_and_inline_marks() {
        let mut p = BlockedProfile::new();
        let stack = vec![at("a;b", 1, true), at(" outer\t", 1, false)];
        p.add_frames(Category::Lock, "p", "t", &stack, 2);
        let e = &p.entries()[0];
        assert_eq!(frame::names(&e.frames), frames(&["a:b", "outer"]));
        assert!(e.frames[0].inlined && !e.frames[1].inlined);
        assert_eq!(e.frames[0].addr, stack[0].addr);
        assert_eq!(p.lines(), vec!["p;t;outer;a:b 2"]);
        let mut q = BlockedProfile::new();
        q.add_frames(Category::Lock, "p", "t", &[at("x\ny", 1, false)], 1);
        assert_eq!(q.lines(), vec!["p;t;x y 1"]);
    }
}
