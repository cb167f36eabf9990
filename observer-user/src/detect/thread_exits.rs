//! Which thread deaths become `thread_exit` alerts.
//!
//! Threads end all the time in healthy programs; the interesting deaths are the ones nobody planned
//! for: a worker that returned or called `pthread_exit` early, or was killed, while the rest of the
//! process carried on without it. The rule:
//!
//! 1. **Only threads that ended themselves, or died by a signal, are candidates.** A thread that ran
//!    `exit(2)` (a return from its start routine or `pthread_exit`) or whose death carries a signal
//!    is a candidate. A thread torn down by another thread's `exit_group` (or by `execve`) is not:
//!    that is the process ending, reported as `process_exit`.
//! 2. **The process must live on.** Each candidate is held for a grace period (default 1 s). If its
//!    process exits within the grace period after the thread's death, the death is dropped: it was
//!    part of the process going away (for instance the signal that killed the thread killed the
//!    whole process, or the last threads exited one by one).
//! 3. **Nobody was waiting for it.** If a joiner was blocked waiting for the thread
//!    (`pthread_join` sleeping on the thread's tid word) before or during the grace period, the death
//!    was expected and is dropped.
//! 4. **One alert per creation site per process.** Deaths that pass are grouped by the stack of the
//!    thread that created them (or, when that is unknown, by the thread name and why: the thread
//!    existed before the observer attached, or its creation event was lost). The first death from a site raises an alert with `count` 1; later ones are only
//!    counted ([`ThreadExitTracker::site_counts`]) and show in the end-of-run summary, so a
//!    thread-per-request server does not flood the alert stream.
//!
//! Times are monotonic nanoseconds supplied by the caller, so the rule is deterministic and tested
//! without a clock. Call [`ThreadExitTracker::poll`] regularly to collect the deaths whose grace
//! period has passed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Past this many creation sites, the sites of exited processes are merged under pid
/// [`EXITED_PROCESSES`], one per creation stack: a sidecar on a host whose short processes
/// lose threads keeps one entry per place in the code, not one per process ever seen.
pub const SITES_BEFORE_MERGE: usize = 1024;
/// The pid under which merged sites of exited processes are counted.
pub const EXITED_PROCESSES: u32 = 0;

/// Grace period used by [`ThreadExitTracker::default`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

/// A thread's death as observed in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadExitEvent {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub time_ns: u64,
    /// The thread ended itself with exit(2); false when it was torn down by a signal or by another
    /// thread's exit_group.
    pub via_exit_syscall: bool,
    pub exit_code: i32,
    /// Signal number that killed it, if any.
    pub signal: Option<i32>,
}

/// A death that passed the rule and should be alerted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadExitDecision {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub time_ns: u64,
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `None` when the thread was created before the observer attached.
    pub lifetime_ns: Option<u64>,
    /// Creator's stack, innermost first; empty if unknown.
    pub created_by: Vec<String>,
    /// Deaths from this creation site so far, this one included.
    pub count: u64,
}

/// Why a dead thread's creator is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnknownCreator {
    /// The thread existed when observation began (or is the process's main thread).
    BeforeAttach,
    /// It started while observed, but its creation event never arrived: the ring buffer was
    /// full (the drop counters say how often).
    CreationLost,
    /// Its creation was seen, but the creator's stack could not be read.
    StackUnreadable,
}

impl UnknownCreator {
    pub fn describe(self) -> &'static str {
        match self {
            UnknownCreator::BeforeAttach => "started before observer attached",
            UnknownCreator::CreationLost => {
                "creation not recorded: its event was dropped, the ring buffer was full (see drops)"
            }
            UnknownCreator::StackUnreadable => "the creating thread's stack could not be read",
        }
    }
}

/// Deaths per creation site, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCount {
    pub tgid: u32,
    /// Creator's stack, innermost first; empty if unknown (then `comm` identifies the site).
    pub created_by: Vec<String>,
    /// Why `created_by` is empty, when it is.
    pub unknown: Option<UnknownCreator>,
    /// Name of the first thread that died from this site.
    pub comm: String,
    /// Deaths that passed the rule; only the first was alerted.
    pub exits: u64,
}

/// What happened to the deaths fed in so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadExitStats {
    /// Alerted (first death from a site).
    pub alerted: u64,
    /// Passed the rule but only counted (site already alerted).
    pub counted: u64,
    /// Torn down by another thread's exit_group or execve (rule 1).
    pub dropped_not_self: u64,
    /// Process exited within the grace period (rule 2).
    pub dropped_process_exit: u64,
    /// A joiner was waiting (rule 3).
    pub dropped_joined: u64,
    /// Still inside their grace period.
    pub pending: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SiteKey {
    Stack(Vec<String>),
    UnknownCreator { comm: String, why: UnknownCreator },
}

#[derive(Debug, Clone)]
struct SiteState {
    created_by: Vec<String>,
    unknown: Option<UnknownCreator>,
    comm: String,
    exits: u64,
}

/// What is known of a dead thread's creation.
#[derive(Debug, Clone)]
enum Origin {
    Known(Created),
    Unknown(Option<Created>, UnknownCreator),
}

#[derive(Debug, Clone)]
struct Created {
    time_ns: u64,
    created_by: Vec<String>,
}

/// Applies the rule in the module documentation to a stream of thread and process events.
#[derive(Debug, Clone)]
pub struct ThreadExitTracker {
    grace_ns: u64,
    alive: HashMap<(u32, u32), Created>,
    /// Threads that existed when observation of their process began: no creation event will
    /// ever come for them, unlike for a thread whose event was dropped.
    present_at_attach: HashSet<(u32, u32)>,
    /// Candidates in their grace period, in death order.
    pending: BTreeMap<(u64, u32, u32), (ThreadExitEvent, Origin)>,
    pending_index: HashMap<(u32, u32), u64>,
    /// Threads a joiner waits for, seen before their death.
    joined: HashSet<(u32, u32)>,
    /// Recently exited processes, for thread deaths whose event arrives after the process exit.
    exited: HashMap<u32, u64>,
    sites: HashMap<(u32, SiteKey), SiteState>,
    /// Exited processes that still have sites of their own (see [`SITES_BEFORE_MERGE`]).
    exited_with_sites: HashSet<u32>,
    stats: ThreadExitStats,
}

/// Watching a whole host, unfiltered, thread deaths of processes younger than this are
/// counted, not alerted (see [`death_worth_an_alert`]).
pub const SERVICE_AGE_NS: u64 = 30_000_000_000;

/// Whether a thread death the tracker decided on becomes an alert. Watching a whole host,
/// unfiltered (`whole_host`), deaths in processes younger than [`SERVICE_AGE_NS`] (or of
/// unknown age) are only counted: compilers and other tools end worker threads all the time,
/// while the silent death that matters is a service's, which has been up for a while.
/// Processes singled out by pid, `--comm` or `--cgroup` always alert.
pub fn death_worth_an_alert(
    whole_host: bool,
    process_start_ns: Option<u64>,
    death_ns: u64,
) -> bool {
    !whole_host
        || process_start_ns.is_some_and(|start| death_ns.saturating_sub(start) >= SERVICE_AGE_NS)
}

impl Default for ThreadExitTracker {
    fn default() -> Self {
        Self::new(DEFAULT_GRACE)
    }
}

impl ThreadExitTracker {
    pub fn new(grace: Duration) -> Self {
        ThreadExitTracker {
            grace_ns: crate::util::duration::duration_ns(grace),
            alive: HashMap::new(),
            present_at_attach: HashSet::new(),
            pending: BTreeMap::new(),
            pending_index: HashMap::new(),
            joined: HashSet::new(),
            exited: HashMap::new(),
            sites: HashMap::new(),
            exited_with_sites: HashSet::new(),
            stats: ThreadExitStats::default(),
        }
    }

    /// A thread was created; `created_by` is the creator's stack, innermost first.
    pub fn thread_created(&mut self, tgid: u32, tid: u32, time_ns: u64, created_by: Vec<String>) {
        // A reused tid is a new thread: a join mark for the old one does not apply.
        self.joined.remove(&(tgid, tid));
        self.alive.insert(
            (tgid, tid),
            Created {
                time_ns,
                created_by,
            },
        );
    }

    /// Process `tgid` is observed from now on and has threads `tids` already: their deaths
    /// will come without a creation event.
    pub fn threads_present(&mut self, tgid: u32, tids: impl IntoIterator<Item = u32>) {
        self.present_at_attach
            .extend(tids.into_iter().map(|tid| (tgid, tid)));
    }

    /// A joiner is blocked waiting for `tid` to end.
    pub fn joiner_waiting(&mut self, tgid: u32, tid: u32) {
        if let Some(time) = self.pending_index.remove(&(tgid, tid)) {
            self.pending.remove(&(time, tgid, tid));
            self.stats.dropped_joined += 1;
        } else {
            self.joined.insert((tgid, tid));
        }
    }

    /// A thread died.
    pub fn thread_exited(&mut self, exit: ThreadExitEvent) {
        let key = (exit.tgid, exit.tid);
        let created = self.alive.remove(&key);
        let before_attach = self.present_at_attach.remove(&key) || exit.tid == exit.tgid;
        let origin = match created {
            Some(c) if !c.created_by.is_empty() => Origin::Known(c),
            Some(c) => Origin::Unknown(Some(c), UnknownCreator::StackUnreadable),
            None if before_attach => Origin::Unknown(None, UnknownCreator::BeforeAttach),
            None => Origin::Unknown(None, UnknownCreator::CreationLost),
        };
        if self.joined.remove(&key) {
            self.stats.dropped_joined += 1;
            return;
        }
        if !exit.via_exit_syscall && exit.signal.is_none() {
            self.stats.dropped_not_self += 1;
            return;
        }
        if let Some(&process_end) = self.exited.get(&exit.tgid) {
            if self.process_exit_covers(exit.time_ns, process_end) {
                self.stats.dropped_process_exit += 1;
                return;
            }
        }
        if let Some(old) = self.pending_index.insert(key, exit.time_ns) {
            self.pending.remove(&(old, exit.tgid, exit.tid));
        }
        self.pending
            .insert((exit.time_ns, exit.tgid, exit.tid), (exit, origin));
    }

    /// The whole process `tgid` ended at `time_ns`.
    pub fn process_exited(&mut self, tgid: u32, time_ns: u64) {
        let covered: Vec<(u64, u32, u32)> = self
            .pending
            .keys()
            .filter(|&&(t, g, _)| g == tgid && self.process_exit_covers(t, time_ns))
            .copied()
            .collect();
        for k in covered {
            self.pending.remove(&k);
            self.pending_index.remove(&(k.1, k.2));
            self.stats.dropped_process_exit += 1;
        }
        self.alive.retain(|&(g, _), _| g != tgid);
        self.present_at_attach.retain(|&(g, _)| g != tgid);
        if self.sites.keys().any(|(g, _)| *g == tgid) {
            self.exited_with_sites.insert(tgid);
        }
        self.joined.retain(|&(g, _)| g != tgid);
        self.exited.insert(tgid, time_ns);
    }

    /// Deaths whose grace period ended by `now_ns`, in death order, that raise an alert.
    pub fn poll(&mut self, now_ns: u64) -> Vec<ThreadExitDecision> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let (time, tgid, tid) = *entry.key();
            if time.saturating_add(self.grace_ns) > now_ns {
                break;
            }
            let (exit, origin) = entry.remove();
            self.pending_index.remove(&(tgid, tid));
            if let Some(d) = self.count(exit, origin) {
                out.push(d);
            }
        }
        // Keep exited processes long enough to catch late-arriving thread deaths, then forget them
        // (the pid may be reused).
        let keep_ns = self.grace_ns.saturating_mul(2);
        self.exited
            .retain(|_, &mut end| end.saturating_add(keep_ns) > now_ns);
        out
    }

    /// Releases every death still in its grace period, as if the grace had passed: for when
    /// observation stops and the process outlived them for as long as we watched.
    pub fn drain(&mut self) -> Vec<ThreadExitDecision> {
        self.poll(u64::MAX)
    }

    /// Deaths per creation site, heaviest first.
    pub fn site_counts(&self) -> Vec<SiteCount> {
        let mut v: Vec<SiteCount> = self
            .sites
            .iter()
            .map(|((tgid, _), s)| SiteCount {
                tgid: *tgid,
                created_by: s.created_by.clone(),
                unknown: s.unknown,
                comm: s.comm.clone(),
                exits: s.exits,
            })
            .collect();
        v.sort_by(|a, b| {
            b.exits
                .cmp(&a.exits)
                .then(a.tgid.cmp(&b.tgid))
                .then_with(|| a.created_by.cmp(&b.created_by))
                .then_with(|| a.comm.cmp(&b.comm))
        });
        v
    }

    pub fn stats(&self) -> ThreadExitStats {
        ThreadExitStats {
            pending: self.pending.len() as u64,
            ..self.stats
        }
    }

    /// Folds the sites of exited processes into one per creation stack under
    /// [`EXITED_PROCESSES`], adding up their deaths.
    fn merge_exited_sites(&mut self) {
        let exited = std::mem::take(&mut self.exited_with_sites);
        let keys: Vec<(u32, SiteKey)> = self
            .sites
            .keys()
            .filter(|(g, _)| exited.contains(g))
            .cloned()
            .collect();
        for key in keys {
            let Some(state) = self.sites.remove(&key) else {
                continue;
            };
            self.sites
                .entry((EXITED_PROCESSES, key.1))
                .and_modify(|s| s.exits += state.exits)
                .or_insert(state);
        }
    }

    fn process_exit_covers(&self, thread_end: u64, process_end: u64) -> bool {
        thread_end <= process_end && process_end - thread_end <= self.grace_ns
    }

    fn count(&mut self, exit: ThreadExitEvent, origin: Origin) -> Option<ThreadExitDecision> {
        let (created, unknown) = match origin {
            Origin::Known(c) => (Some(c), None),
            Origin::Unknown(c, why) => (c, Some(why)),
        };
        let created_by = created
            .as_ref()
            .map(|c| c.created_by.clone())
            .unwrap_or_default();
        let site = match unknown {
            Some(why) => SiteKey::UnknownCreator {
                comm: exit.comm.clone(),
                why,
            },
            None => SiteKey::Stack(created_by.clone()),
        };
        if self.sites.len() >= SITES_BEFORE_MERGE
            && !self.sites.contains_key(&(exit.tgid, site.clone()))
        {
            self.merge_exited_sites();
        }
        let state = self
            .sites
            .entry((exit.tgid, site))
            .or_insert_with(|| SiteState {
                created_by: created_by.clone(),
                unknown,
                comm: exit.comm.clone(),
                exits: 0,
            });
        state.exits += 1;
        if state.exits > 1 {
            self.stats.counted += 1;
            return None;
        }
        self.stats.alerted += 1;
        Some(ThreadExitDecision {
            lifetime_ns: created.map(|c| exit.time_ns.saturating_sub(c.time_ns)),
            count: state.exits,
            created_by,
            tgid: exit.tgid,
            tid: exit.tid,
            comm: exit.comm,
            time_ns: exit.time_ns,
            exit_code: exit.exit_code,
            signal: exit.signal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    fn stack(f: &str) -> Vec<String> {
        vec!["pthread_create".to_string(), f.to_string()]
    }

    fn exit(tgid: u32, tid: u32, time_ns: u64) -> ThreadExitEvent {
        ThreadExitEvent {
            tgid,
            tid,
            comm: format!("worker-{tid}"),
            time_ns,
            via_exit_syscall: true,
            exit_code: 0,
            signal: None,
        }
    }

    #[test]
    fn self_exit_is_held_for_the_grace_period_then_alerted() {
        let mut t = ThreadExitTracker::default();
        t.thread_created(100, 101, 10 * S, stack("start_pool"));
        t.thread_exited(ThreadExitEvent {
            exit_code: 3,
            ..exit(100, 101, 12 * S)
        });
        assert!(t.poll(12 * S + 999 * MS).is_empty());
        assert_eq!(t.stats().pending, 1);
        let d = t.poll(13 * S);
        assert_eq!(
            d,
            vec![ThreadExitDecision {
                tgid: 100,
                tid: 101,
                comm: "worker-101".into(),
                time_ns: 12 * S,
                exit_code: 3,
                signal: None,
                lifetime_ns: Some(2 * S),
                created_by: stack("start_pool"),
                count: 1,
            }]
        );
        assert!(t.poll(20 * S).is_empty());
        assert_eq!(t.stats().alerted, 1);
        assert_eq!(t.stats().pending, 0);
    }

    #[test]
    fn torn_down_by_exit_group_is_not_a_candidate() {
        let mut t = ThreadExitTracker::default();
        t.thread_exited(ThreadExitEvent {
            via_exit_syscall: false,
            ..exit(100, 101, S)
        });
        assert!(t.poll(10 * S).is_empty());
        assert_eq!(t.stats().dropped_not_self, 1);
    }

    #[test]
    fn signal_death_with_surviving_process_is_alerted() {
        let mut t = ThreadExitTracker::default();
        t.thread_exited(ThreadExitEvent {
            via_exit_syscall: false,
            signal: Some(11),
            ..exit(100, 101, S)
        });
        let d = t.poll(2 * S);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].signal, Some(11));
        assert_eq!(d[0].lifetime_ns, None, "created before attach");
        assert!(d[0].created_by.is_empty());
    }

    #[test]
    fn process_exit_within_grace_drops_the_death() {
        let mut t = ThreadExitTracker::default();
        t.thread_exited(ThreadExitEvent {
            via_exit_syscall: false,
            signal: Some(11),
            ..exit(100, 101, S)
        });
        t.thread_exited(exit(200, 201, S));
        t.process_exited(100, S + 5 * MS);
        let d = t.poll(3 * S);
        assert_eq!(d.iter().map(|d| d.tgid).collect::<Vec<_>>(), vec![200]);
        assert_eq!(t.stats().dropped_process_exit, 1);
    }

    #[test]
    fn process_exit_after_grace_does_not_drop() {
        let mut t = ThreadExitTracker::default();
        t.thread_exited(exit(100, 101, S));
        t.process_exited(100, 2 * S + 1);
        assert_eq!(t.poll(3 * S).len(), 1);
    }

    #[test]
    fn thread_death_arriving_after_its_process_exit_is_dropped() {
        let mut t = ThreadExitTracker::default();
        t.process_exited(100, S + 10 * MS);
        t.thread_exited(exit(100, 101, S));
        assert!(t.poll(3 * S).is_empty());
        assert_eq!(t.stats().dropped_process_exit, 1);
        // The pid is reused later by a new process whose thread dies: reported.
        t.thread_exited(exit(100, 102, 5 * S));
        assert_eq!(t.poll(7 * S).len(), 1);
    }

    #[test]
    fn joiner_waiting_before_death_drops_it() {
        let mut t = ThreadExitTracker::default();
        t.thread_created(100, 101, 0, stack("start"));
        t.joiner_waiting(100, 101);
        t.thread_exited(exit(100, 101, S));
        assert!(t.poll(5 * S).is_empty());
        assert_eq!(t.stats().dropped_joined, 1);
    }

    #[test]
    fn joiner_seen_during_grace_drops_it() {
        let mut t = ThreadExitTracker::default();
        t.thread_exited(exit(100, 101, S));
        t.joiner_waiting(100, 101);
        assert!(t.poll(5 * S).is_empty());
        assert_eq!(t.stats().dropped_joined, 1);
    }

    #[test]
    fn join_mark_does_not_survive_tid_reuse() {
        let mut t = ThreadExitTracker::default();
        t.joiner_waiting(100, 101);
        t.thread_created(100, 101, S, stack("start"));
        t.thread_exited(exit(100, 101, 2 * S));
        assert_eq!(t.poll(5 * S).len(), 1);
    }

    #[test]
    fn one_alert_per_creation_site_per_process() {
        let mut t = ThreadExitTracker::default();
        for tid in 1..=5 {
            t.thread_created(100, 100 + tid, 0, stack("handle_request"));
            t.thread_exited(exit(100, 100 + tid, u64::from(tid) * MS));
        }
        t.thread_created(100, 200, 0, stack("start_flusher"));
        t.thread_exited(exit(100, 200, 10 * MS));
        // Same site in another process is a separate site.
        t.thread_created(300, 301, 0, stack("handle_request"));
        t.thread_exited(exit(300, 301, 10 * MS));

        let d = t.poll(2 * S);
        assert_eq!(
            d.iter()
                .map(|d| (d.tgid, d.tid, d.count))
                .collect::<Vec<_>>(),
            vec![(100, 101, 1), (100, 200, 1), (300, 301, 1)]
        );
        let sites = t.site_counts();
        assert_eq!(
            sites
                .iter()
                .map(|s| (s.tgid, s.created_by[1].as_str(), s.exits))
                .collect::<Vec<_>>(),
            vec![
                (100, "handle_request", 5),
                (100, "start_flusher", 1),
                (300, "handle_request", 1)
            ]
        );
        let st = t.stats();
        assert_eq!((st.alerted, st.counted), (3, 4));
    }

    #[test]
    fn unknown_creator_groups_by_thread_name() {
        let mut t = ThreadExitTracker::default();
        let named = |tid, comm: &str| ThreadExitEvent {
            comm: comm.into(),
            ..exit(100, tid, S)
        };
        t.thread_exited(named(101, "io"));
        t.thread_exited(named(102, "io"));
        t.thread_exited(named(103, "gc"));
        let d = t.poll(3 * S);
        assert_eq!(d.iter().map(|d| d.tid).collect::<Vec<_>>(), vec![101, 103]);
        let sites = t.site_counts();
        assert_eq!(sites[0].comm, "io");
        assert_eq!(sites[0].exits, 2);
    }

    /// A creator is unknown for a reason, and the summary says which: a thread that was there
    /// when observation began, one whose creation event was dropped, one whose creator's
    /// stack could not be read.
    #[test]
    fn unknown_creator_says_why() {
        let mut t = ThreadExitTracker::default();
        t.threads_present(100, [100, 101]);
        t.thread_created(100, 103, 0, Vec::new());
        for tid in [101, 102, 103] {
            t.thread_exited(exit(100, tid, S));
        }
        t.poll(3 * S);
        let why = |tid: u32| {
            let sites = t.site_counts();
            let comm = format!("worker-{tid}");
            sites
                .iter()
                .find(|s| s.comm == comm)
                .and_then(|s| s.unknown)
        };
        assert_eq!(why(101), Some(UnknownCreator::BeforeAttach));
        assert_eq!(why(102), Some(UnknownCreator::CreationLost));
        assert_eq!(why(103), Some(UnknownCreator::StackUnreadable));
        assert!(UnknownCreator::CreationLost.describe().contains("dropped"));
        assert!(!UnknownCreator::CreationLost
            .describe()
            .contains("before observer attached"));
    }

    /// The presence mark is for one thread's life: a reused tid after its death, whose
    /// creation event was lost, is not "before attach".
    #[test]
    fn presence_at_attach_does_not_survive_the_thread() {
        let mut t = ThreadExitTracker::default();
        t.threads_present(100, [101]);
        t.thread_exited(exit(100, 101, S));
        t.thread_exited(ThreadExitEvent {
            comm: "again".into(),
            ..exit(100, 101, 5 * S)
        });
        t.poll(10 * S);
        let again = t.site_counts().into_iter().find(|s| s.comm == "again");
        assert_eq!(
            again.and_then(|s| s.unknown),
            Some(UnknownCreator::CreationLost)
        );
    }

    /// Short processes that each lose a thread from the same place: the sites stay bounded,
    /// and no death is lost from the totals.
    #[test]
    fn sites_of_exited_processes_merge_past_the_bound() {
        let mut t = ThreadExitTracker::default();
        let processes = 3 * SITES_BEFORE_MERGE as u32;
        for tgid in 1..=processes {
            let tid = tgid + 1_000_000;
            t.thread_created(tgid, tid, 0, stack("spawn_detached"));
            t.thread_exited(exit(tgid, tid, S));
            t.poll(3 * S);
            t.process_exited(tgid, 4 * S);
        }
        let sites = t.site_counts();
        assert!(
            sites.len() <= SITES_BEFORE_MERGE + 1,
            "{} sites",
            sites.len()
        );
        let total: u64 = sites.iter().map(|s| s.exits).sum();
        assert_eq!(total, u64::from(processes));
        assert!(sites.iter().any(|s| s.tgid == EXITED_PROCESSES));
    }

    #[test]
    fn drain_releases_pending_deaths() {
        let mut t = ThreadExitTracker::default();
        t.thread_exited(exit(100, 101, S));
        assert!(t.poll(S).is_empty());
        assert_eq!(t.drain().len(), 1);
        assert_eq!(t.stats().pending, 0);
    }

    #[test]
    fn whole_host_alerts_only_for_services() {
        let start = 1_000;
        assert!(death_worth_an_alert(false, None, 0), "singled out: always");
        assert!(death_worth_an_alert(false, Some(start), start + 1));
        assert!(!death_worth_an_alert(
            true,
            Some(start),
            start + SERVICE_AGE_NS - 1
        ));
        assert!(death_worth_an_alert(
            true,
            Some(start),
            start + SERVICE_AGE_NS
        ));
        assert!(!death_worth_an_alert(true, None, u64::MAX), "age unknown");
    }

    #[test]
    fn configurable_grace() {
        let mut t = ThreadExitTracker::new(Duration::from_millis(50));
        t.thread_exited(exit(100, 101, S));
        assert!(t.poll(S + 49 * MS).is_empty());
        assert_eq!(t.poll(S + 50 * MS).len(), 1);
    }
}
