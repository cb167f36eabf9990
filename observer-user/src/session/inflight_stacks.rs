//! Stacks of waiters read while they still wait, for the waits that something outside their
//! process ends.
//!
//! The kernel copies a waiter's stack when its wait ends, from the waker's address space: when
//! the waker is another thread of the process. A wait ended by a timer (sleeps, timed waits,
//! poll timeouts), a signal, I/O completion or another process has no copy, and the kernel's
//! frame-pointer walk from when it began stops inside code built without frame pointers (one
//! or two frames of libc). But while a thread waits, its user stack does not change, and the
//! in-flight table has its registers: a thread of ours ([`SnapshotWorker`]) scans the table
//! every quarter of the threshold, reads the stack of each wait that the kernel will report
//! (old enough to become long), once, unwinds it and keeps the addresses until the wait's event
//! comes. A read counts only if the same wait is still in flight after it: the kernel removes
//! the entry when it wakes the thread, before the thread can run again, so the bytes read were
//! the waiting stack.
//!
//! Not done: reading the stack when the event arrives. The thread is awake by then and may
//! have returned into its callers and called others, overwriting the frames; nothing tells
//! whether it did. Waits that begin and end between two scans keep the frame-pointer stack,
//! marked [`PARTIAL_STACK`], and are counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use observer_common::{wait_class, InFlight, WaitEvent, STACK_COPY_BYTES};

use super::short_stacks::PARTIAL_STACK;
use super::Session;
use crate::kernel::probes::InFlightTable;
use crate::proc::memory::read_process_memory;
use crate::stacks::frame::Frame;
use crate::stacks::unwind::{Regs, Unwinder};
use crate::util::clock::monotonic_ns;

/// Waits at most this many (of all processes) keep a snapshot; the oldest goes first.
const MAX_SNAPSHOTS: usize = 8192;
/// And their addresses at most this many bytes in all.
const MAX_SNAPSHOT_BYTES: usize = 4 << 20;
/// A snapshot of a wait no longer in flight is kept this long for its event, which the ring
/// buffer may still hold (the session reads it between scans).
const ENDED_GRACE_NS: u64 = 2_000_000_000;
/// At most this many stacks are read per scan; the others wait for the next one (their waits
/// are long and the stack does not change).
const MAX_READS_PER_SCAN: usize = 128;

/// The snapshot thread reads the in-flight table this often (when it is small, see
/// [`FAST_SCAN_NS_PER_ENTRY`]): a quarter of the threshold, so that every wait that becomes
/// long is seen at least once between half the threshold and the threshold.
pub(super) fn snapshot_interval(threshold: Duration) -> Duration {
    (threshold / 4).clamp(Duration::from_millis(10), Duration::from_millis(200))
}

/// Reading the table costs two system calls per entry: scans come at most once per this many
/// nanoseconds per wait in flight (4,000 map reads a second: 20 waits every 10 ms, 100 every
/// 50 ms, 400 every 200 ms).
const FAST_SCAN_NS_PER_ENTRY: u64 = 500_000;

/// Waits whose snapshot was dropped for room are not read again while they last (else a host
/// with more waits in flight than snapshots would read the same stacks over and over); at
/// most this many are remembered.
const MAX_DROPPED_KEYS: usize = 65_536;

/// Where a long wait's waiter stack came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StackSource {
    /// Copied by the kernel when the wait ended (the waker shares the address space).
    KernelCopy,
    /// Read from the process while the thread still waited.
    Snapshot,
    /// Neither: the frame-pointer walk taken when the wait began.
    FramePointers,
}

struct Snapshot {
    tgid: u32,
    /// Unwound addresses, innermost first (a pc, then return addresses).
    addrs: Vec<u64>,
    /// When a scan first found the wait no longer in flight.
    ended_at: Option<u64>,
}

/// Snapshots keyed by (tid, wait start), bounded in count and bytes.
#[derive(Default)]
pub(super) struct InflightStacks {
    snaps: HashMap<(u32, u64), Snapshot>,
    /// Insertion order, for dropping the oldest; may hold keys already removed.
    order: VecDeque<(u32, u64)>,
    bytes: usize,
    /// Waits in flight at the last scan, and when it was.
    last_in_flight: usize,
    last_scan_ns: u64,
    /// Waits whose stack was read (or found unreadable) and need no other read.
    pub taken: u64,
    /// Reads thrown away: the wait ended while its stack was read.
    pub raced: u64,
    /// Snapshots dropped for room before their wait ended.
    pub evicted: u64,
    /// Their keys, while those waits go on: not read again.
    dropped: HashSet<(u32, u64)>,
}

/// Whether the kernel will send this wait as an event when it ends long: lock waits and waits
/// in the kernel always, idle waits with `--report-idle`.
pub(super) fn reported(e: &InFlight, report_idle: bool) -> bool {
    e.class == wait_class::LOCK || e.class == wait_class::UNINTERRUPTIBLE || report_idle
}

fn snapshot_bytes(addrs: &[u64]) -> usize {
    addrs.len() * 8 + 64
}

impl InflightStacks {
    /// The waits in `blocked` (tid -> entry) whose stacks to read now: those the kernel will
    /// report, at least `min_age_ns` old, not read before; at most [`MAX_READS_PER_SCAN`].
    pub fn candidates(
        &mut self,
        now: u64,
        blocked: &HashMap<u32, InFlight>,
        min_age_ns: u64,
        report_idle: bool,
    ) -> Vec<(u32, InFlight)> {
        self.last_in_flight = blocked.len();
        self.last_scan_ns = now;
        blocked
            .iter()
            .filter(|&(&tid, e)| {
                reported(e, report_idle)
                    && now.saturating_sub(e.start_ns) >= min_age_ns
                    && !self.snaps.contains_key(&(tid, e.start_ns))
                    && !self.dropped.contains(&(tid, e.start_ns))
            })
            .take(MAX_READS_PER_SCAN)
            .map(|(&tid, e)| (tid, *e))
            .collect()
    }

    /// Keeps what was read: the unwound addresses of each wait, or `None` when the wait ended
    /// while its stack was read (the bytes may not be its waiting stack).
    pub fn record(&mut self, read: Vec<(u32, InFlight, Option<Vec<u64>>)>) {
        for (tid, e, addrs) in read {
            match addrs {
                Some(addrs) => {
                    self.taken += 1;
                    self.insert(tid, e.start_ns, e.tgid, addrs);
                }
                None => self.raced += 1,
            }
        }
    }

    /// Ages out the snapshots of waits no longer in `blocked`.
    pub fn age(&mut self, now: u64, blocked: &HashMap<u32, InFlight>) {
        for (&(tid, start), snap) in self.snaps.iter_mut() {
            let in_flight = blocked.get(&tid).is_some_and(|e| e.start_ns == start);
            if in_flight {
                snap.ended_at = None;
            } else if snap.ended_at.is_none() {
                snap.ended_at = Some(now);
            }
        }
        self.dropped
            .retain(|(tid, start)| blocked.get(tid).is_some_and(|e| e.start_ns == *start));
        let before = self.snaps.len();
        let mut freed = 0;
        self.snaps.retain(|_, s| {
            let keep = s
                .ended_at
                .is_none_or(|t| now.saturating_sub(t) < ENDED_GRACE_NS);
            if !keep {
                freed += snapshot_bytes(&s.addrs);
            }
            keep
        });
        self.bytes -= freed;
        if self.snaps.len() != before {
            self.compact_order();
        }
    }

    /// One whole scan: [`Self::candidates`], read each with `read`, [`Self::record`],
    /// [`Self::age`].
    #[cfg(test)]
    pub fn scan(
        &mut self,
        now: u64,
        blocked: &HashMap<u32, InFlight>,
        min_age_ns: u64,
        report_idle: bool,
        mut read: impl FnMut(u32, &InFlight) -> Option<Vec<u64>>,
    ) {
        let wanted = self.candidates(now, blocked, min_age_ns, report_idle);
        let results = wanted
            .into_iter()
            .map(|(tid, e)| (tid, e, read(tid, &e)))
            .collect();
        self.record(results);
        self.age(now, blocked);
    }

    fn insert(&mut self, tid: u32, start_ns: u64, tgid: u32, addrs: Vec<u64>) {
        let size = snapshot_bytes(&addrs);
        while self.snaps.len() >= MAX_SNAPSHOTS || self.bytes + size > MAX_SNAPSHOT_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.snaps.remove(&oldest) {
                self.bytes -= snapshot_bytes(&s.addrs);
                if s.ended_at.is_none() {
                    self.evicted += 1;
                    if self.dropped.len() >= MAX_DROPPED_KEYS {
                        self.dropped.clear();
                    }
                    self.dropped.insert(oldest);
                }
            }
        }
        self.bytes += size;
        self.order.push_back((tid, start_ns));
        let old = self.snaps.insert(
            (tid, start_ns),
            Snapshot {
                tgid,
                addrs,
                ended_at: None,
            },
        );
        if let Some(old) = old {
            self.bytes -= snapshot_bytes(&old.addrs);
        }
    }

    /// Drops the keys of removed snapshots from the order queue once they dominate it.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.snaps.len() + 64 {
            let snaps = &self.snaps;
            self.order.retain(|k| snaps.contains_key(k));
        }
    }

    /// The waiter's addresses of the wait of `tid` that began at `start_ns` in process
    /// `tgid`, removed from the store (its wait has ended).
    pub fn take(&mut self, tgid: u32, tid: u32, start_ns: u64) -> Option<Vec<u64>> {
        let s = self.snaps.remove(&(tid, start_ns))?;
        self.bytes -= snapshot_bytes(&s.addrs);
        self.compact_order();
        (s.tgid == tgid).then_some(s.addrs)
    }

    /// Whether a scan for snapshots alone is due at `now`: its cost is bounded by the size
    /// of the table the last scan read.
    pub fn fast_scan_due(&self, now: u64) -> bool {
        let gap = (self.last_in_flight as u64).saturating_mul(FAST_SCAN_NS_PER_ENTRY);
        now.saturating_sub(self.last_scan_ns) >= gap
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.snaps.len()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Long waits reported, by where their waiter stack came from.
#[derive(Default)]
pub(super) struct WaitStackCounts {
    pub from_copy: u64,
    pub from_snapshot: u64,
    pub from_frame_pointers: u64,
}

impl WaitStackCounts {
    pub fn count(&mut self, source: StackSource) {
        match source {
            StackSource::KernelCopy => self.from_copy += 1,
            StackSource::Snapshot => self.from_snapshot += 1,
            StackSource::FramePointers => self.from_frame_pointers += 1,
        }
    }
}

/// Whether the kernel's event carries a copy of the waiter's stack to unwind.
pub(super) fn has_waiter_copy(w: &WaitEvent) -> bool {
    w.waiter.sp != 0 && w.waiter.len != 0
}

/// The thread that takes the snapshots: on its own, so that the session's event loop (which
/// can be busy for a while naming the first stacks of a program, its DWARF read for the first
/// time) never delays them; it has its own handle on the in-flight table and its own
/// unwinder (the `.eh_frame` sections of the files the target maps).
pub(super) struct SnapshotWorker {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    store: InflightStacks,
    /// Processes that ran another program: their cached maps no longer describe them.
    replaced: Vec<u32>,
}

impl SnapshotWorker {
    pub fn start(table: InFlightTable, threshold: Duration, report_idle: bool) -> Option<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&shared), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("observer-stacks".into())
            .spawn(move || run_worker(&table, &s, &st, threshold, report_idle))
            .map_err(|e| log::warn!("no thread for wait stack snapshots: {e}"))
            .ok()?;
        Some(SnapshotWorker {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic in the worker leaves the store usable: its data is plain.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, tgid: u32, tid: u32, start_ns: u64) -> Option<Vec<u64>> {
        self.lock().store.take(tgid, tid, start_ns)
    }

    /// Process `pid` ran another program.
    pub fn program_replaced(&self, pid: u32) {
        let mut shared = self.lock();
        if shared.replaced.len() < 4096 {
            shared.replaced.push(pid);
        }
    }
}

impl Drop for SnapshotWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_worker(
    table: &InFlightTable,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    threshold: Duration,
    report_idle: bool,
) {
    let interval = snapshot_interval(threshold);
    let min_age_ns = crate::util::duration::duration_ns(threshold) / 2;
    let mut unwinder = Unwinder::new();
    let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(interval);
        if !lock().store.fast_scan_due(monotonic_ns()) {
            continue;
        }
        let blocked: HashMap<u32, InFlight> = table.entries().into_iter().collect();
        let now = monotonic_ns();
        let (wanted, replaced) = {
            let mut s = lock();
            let wanted = s.store.candidates(now, &blocked, min_age_ns, report_idle);
            (wanted, std::mem::take(&mut s.replaced))
        };
        for pid in replaced {
            unwinder.forget(pid);
        }
        // The stacks are read without the lock: the session takes snapshots meanwhile.
        let results = wanted
            .into_iter()
            .map(|(tid, e)| {
                let regs = Regs {
                    ip: e.ip,
                    sp: e.sp,
                    bp: e.bp,
                };
                // An unreadable stack is kept as empty: the wait falls back to frame pointers.
                let addrs = read_stack(e.tgid, e.sp)
                    .map(|bytes| unwinder.unwind(e.tgid, regs, &bytes))
                    .unwrap_or_default();
                let still = table.get(tid).is_some_and(|now| now.start_ns == e.start_ns);
                (tid, e, still.then_some(addrs))
            })
            .collect();
        {
            let mut s = lock();
            s.store.record(results);
            s.store.age(now, &blocked);
        }
        // Maps are kept only for processes with waits in flight (a host's processes come and go).
        let waiting: HashSet<u32> = blocked.values().map(|e| e.tgid).collect();
        unwinder.retain_processes(|pid| waiting.contains(&pid));
    }
}

/// The top of a thread's stack at `sp`: 16 KiB, less when the stack ends sooner.
fn read_stack(pid: u32, sp: u64) -> Option<Vec<u8>> {
    let mut len = STACK_COPY_BYTES;
    while len >= 512 {
        if let Ok(bytes) = read_process_memory(pid, sp, len) {
            if !bytes.is_empty() {
                return Some(bytes);
            }
        }
        len /= 2;
    }
    None
}

impl Session {
    /// The waiter's frames of a long wait that ended: the kernel's copy, else the snapshot read
    /// while it waited, else the frame-pointer stack from when it began, marked as such.
    pub(super) fn waiter_frames(&mut self, w: &WaitEvent) -> Vec<Frame> {
        let snapshot = self
            .wait_stack_worker
            .as_ref()
            .and_then(|worker| worker.take(w.tgid, w.tid, w.start_ns));
        let (frames, source) = if has_waiter_copy(w) {
            let frames =
                self.stacks
                    .resolve_snapshot_frames(&self.probes, w.tgid, &w.waiter, w.stack_id);
            (frames, StackSource::KernelCopy)
        } else if let Some(addrs) = snapshot.filter(|a| !a.is_empty()) {
            let frames = self.stacks.resolve_addrs_frames(w.tgid, &addrs);
            (frames, StackSource::Snapshot)
        } else {
            let mut frames = self
                .stacks
                .resolve_id_frames(&self.probes, w.tgid, w.stack_id);
            // A Go program's frame-pointer stacks are whole; only the others may lack callers.
            if !self.watched.get(&w.tgid).is_some_and(|t| t.is_go) {
                frames.push(Frame::named(PARTIAL_STACK));
            }
            (frames, StackSource::FramePointers)
        };
        self.wait_stack_counts.count(source);
        frames
    }

    /// A summary line: where the stacks of long waits came from, when any was not copied.
    pub(super) fn inflight_stacks_note(&self) -> String {
        let s = &self.wait_stack_counts;
        if s.from_snapshot + s.from_frame_pointers == 0 {
            return String::new();
        }
        format!(
            "wait stacks: {} long waits with the stack copied at wake-up, {} read while waiting \
             (ended by a timer, a signal or another process), {} frame-pointer stacks only \
             ({PARTIAL_STACK}: ended before a scan saw them)\n",
            s.from_copy, s.from_snapshot, s.from_frame_pointers
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(tgid: u32, start_ns: u64, class: u32) -> InFlight {
        InFlight {
            tgid,
            start_ns,
            class,
            ..Default::default()
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn reads_each_reported_wait_once_when_old_enough() {
        let mut s = InflightStacks::default();
        let mut blocked = HashMap::new();
        blocked.insert(10, wait(1, 1000 * MS, wait_class::SLEEP));
        blocked.insert(11, wait(1, 1000 * MS, wait_class::LOCK));
        blocked.insert(12, wait(1, 1090 * MS, wait_class::LOCK));
        let reads = std::cell::RefCell::new(Vec::new());
        let read = |tid: u32, _: &InFlight| {
            reads.borrow_mut().push(tid);
            Some(vec![0x1000, u64::from(tid)])
        };
        // Without --report-idle the sleep is never sent: not read. The young lock wait waits.
        s.scan(1100 * MS, &blocked, 50 * MS, false, read);
        assert_eq!(*reads.borrow(), vec![11]);
        s.scan(1200 * MS, &blocked, 50 * MS, false, read);
        assert_eq!(*reads.borrow(), vec![11, 12], "each wait is read once");
        assert_eq!(s.len(), 2);
        assert_eq!(s.take(1, 11, 1000 * MS), Some(vec![0x1000, 11]));
        assert_eq!(s.take(1, 11, 1000 * MS), None, "taken once");
        // Another wait of the same thread is another key; another process's is not given out.
        assert_eq!(s.take(1, 12, 1000 * MS), None);
        assert_eq!(s.take(2, 12, 1090 * MS), None);
        assert_eq!(s.len(), 0);
        assert_eq!(s.bytes(), 0);
        // With --report-idle the sleep is read too.
        s.scan(1300 * MS, &blocked, 50 * MS, true, read);
        assert!(reads.borrow().contains(&10));
    }

    #[test]
    fn snapshot_scans_come_four_times_per_threshold_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(snapshot_interval(ms(100)), ms(25));
        assert_eq!(snapshot_interval(ms(1)), ms(10));
        assert_eq!(snapshot_interval(Duration::from_secs(10)), ms(200));
    }

    #[test]
    fn scans_between_the_session_scans_cost_at_most_a_bounded_rate() {
        let mut s = InflightStacks::default();
        let mut blocked = HashMap::new();
        for tid in 0..100 {
            blocked.insert(tid, wait(1, 0, wait_class::SLEEP));
        }
        s.scan(1000 * MS, &blocked, 0, false, |_, _| None);
        // 100 waits: the next one 50 ms later at the earliest.
        assert!(!s.fast_scan_due(1049 * MS));
        assert!(s.fast_scan_due(1050 * MS));
        s.scan(1000 * MS, &HashMap::new(), 0, false, |_, _| None);
        assert!(s.fast_scan_due(1000 * MS));
    }

    #[test]
    fn a_read_raced_by_the_end_of_the_wait_is_not_kept() {
        let mut s = InflightStacks::default();
        let mut blocked = HashMap::new();
        blocked.insert(10, wait(1, 0, wait_class::LOCK));
        s.scan(100 * MS, &blocked, 0, false, |_, _| None);
        assert_eq!((s.len(), s.raced, s.taken), (0, 1, 0));
    }

    #[test]
    fn snapshots_of_ended_waits_stay_a_grace_period_for_their_event() {
        let mut s = InflightStacks::default();
        let mut blocked = HashMap::new();
        blocked.insert(10, wait(1, 0, wait_class::LOCK));
        s.scan(100 * MS, &blocked, 0, false, |_, _| Some(vec![1, 2, 3]));
        blocked.clear();
        // The wait ended; its event may still be in the ring buffer.
        s.scan(300 * MS, &blocked, 0, false, |_, _| unreachable!());
        s.scan(300 * MS + ENDED_GRACE_NS - 1, &blocked, 0, false, |_, _| {
            None
        });
        assert_eq!(s.len(), 1);
        s.scan(300 * MS + ENDED_GRACE_NS, &blocked, 0, false, |_, _| None);
        assert_eq!((s.len(), s.bytes()), (0, 0));
        // The same thread waiting again (new start) is a new snapshot, the old one ends.
        blocked.insert(10, wait(1, 5000 * MS, wait_class::LOCK));
        s.scan(6000 * MS, &blocked, 0, false, |_, _| Some(vec![4]));
        assert_eq!(s.take(1, 10, 5000 * MS), Some(vec![4]));
    }

    #[test]
    fn bounded_in_count_and_bytes_dropping_the_oldest() {
        let mut s = InflightStacks::default();
        let mut blocked = HashMap::new();
        let n = MAX_SNAPSHOTS as u32 + 100;
        for tid in 0..n {
            blocked.insert(tid, wait(1, u64::from(tid), wait_class::LOCK));
        }
        // Many scans (each reads a bounded number of stacks).
        for round in 0..(n as usize / MAX_READS_PER_SCAN + 2) {
            s.scan(10_000 * MS + round as u64, &blocked, 0, false, |tid, _| {
                Some(vec![u64::from(tid); 4])
            });
            assert!(s.len() <= MAX_SNAPSHOTS);
        }
        assert_eq!(s.len(), MAX_SNAPSHOTS);
        assert_eq!(s.evicted, 100);
        // The waits whose snapshots made room are not read again while they go on.
        s.scan(20_000 * MS, &blocked, 0, false, |_, _| unreachable!());
        // Once they end, their keys are forgotten.
        blocked.clear();
        s.scan(20_001 * MS, &blocked, 0, false, |_, _| None);
        assert!(s.dropped.is_empty());
        // Big stacks: the byte bound holds.
        let mut s = InflightStacks::default();
        for tid in 0..2000u32 {
            s.insert(tid, 0, 1, vec![0; 1024]);
            assert!(s.bytes() <= MAX_SNAPSHOT_BYTES);
        }
        assert!(s.len() < 2000);
        assert!(s.order.len() <= 2 * s.len() + 64 + 2000);
    }
}
