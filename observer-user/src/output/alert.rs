//! The alert stream: one flat JSON object per line.
//!
//! Every alert has `kind`, `time` (RFC 3339 UTC with milliseconds), `pid`, `tid`, `comm` and `stack`
//! (strings, innermost frame first, e.g. `"transfer_a_to_b (bank.c:14)"`), followed by the fields of
//! its kind:
//!
//! | kind | fields |
//! | --- | --- |
//! | `lock_hold` | `uaddr`, `lock_kind`, `owner_recorded`, `hold_ns`, `holder_tid`, `holder_comm`, `holder_known_from`, `holder_state`, `holder_syscall`, `holder_stack`, `holder_samples`, `release_tid`, `release_comm`, `release_stack`, `waiters`, `longest_wait_ns`, `total_wait_ns`, `waiter_stacks`: `[{stack, count, longest_ns, comm}]`, `waiter_stacks_omitted` (top-level `tid`/`stack` = the longest waiter) |
//! | `stall` | `blocked_ns`, `stall_on`, `uaddr`, `syscall`, `owner_tid`, `owner_stack`, `kernel_stack`, `holder_state`, `holder_syscall`, `holder_stack`, `holder_samples`, `lock_kind`, `owner_recorded`, `home_stack` |
//! | `stall_end` | `blocked_ns`, `stall_on`, `syscall`, `waker_tid`, `waker_comm`, `waker_stack`, `woken_by` (the end of a `stall_on: "away_from_home"` stall) |
//! | `deadlock` | `cycle`: `[{tid, comm, uaddr, owner_tid, stack}]` (top-level `tid`/`stack` = first member) |
//! | `thread_exit` | `exit_code`, `signal`, `lifetime_ns`, `created_by`, `count` |
//! | `process_exit` | `exit_code`, `signal`, `by_tid` |
//! | `idle_wait` | `duration_ns`, `syscall`, `wait_class`, `waker_tid` (opt-in: waits that are not lock waits) |
//! | `goroutine_wait` | `goid`, `wait_reason`, `duration_ns`, `created_by`, `waker_goid`, `waker_stack`, `labels`, `waiter_stacks`: `[{stack, count, longest_ns, labels}]` |
//! | `goroutine_stall` | `goid`, `wait_reason`, `blocked_ns`, `created_by`, `labels` |
//! | `goroutine_leak` | `created_by`, `wait_reason`, `count`, `growth`, `window_ns`, `labels` |
//! | `go_panic` | `goid`, `message`, `recovered`, `labels` |
//! | `degraded` | `reason`, `state`, `count`, `window_ns`, `total`, `since`, `detail` (observer limited itself: what was lost, from when) |
//!
//! Alerts about a process in a container also carry `container_id` (the runtime's full id, 64
//! lower-case hex digits) and, in a Kubernetes pod, `pod_uid` (the pod's UID, dashed), both
//! read from `/proc/PID/cgroup` (`proc::container`) and absent (not null) outside containers,
//! like `ns_pid` / `ns_tid`.
//!
//! `process_exit` also carries `message`: for a Go process, the fatal panic or throw text.
//!
//! `labels` (goroutine alerts) is the goroutine's pprof labels, `{key: value}`, and is absent,
//! not null, when it has none or they could not be read; a waiter stack's `labels` is a list of
//! its waiters' distinct label sets.
//!
//! Addresses (`uaddr`) are hex strings (`"0x7f3a1c000b20"`) because JSON numbers lose precision above
//! 2^53 in many readers. Unknown values are `null`, never omitted, so every line of a kind has the same
//! keys. `kind` is written first so that the stream reads well in a terminal.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize, Serializer};

use crate::stacks::frame::Frame;

/// One alert: common fields plus the fields of its kind (flattened into the same JSON object).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Alert {
    /// RFC 3339 UTC with milliseconds; see [`format_time`].
    pub time: String,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The process and thread ids inside the target's own pid namespace (a container), when
    /// they differ from the host's `pid` / `tid`.
    #[serde(default)]
    pub ns_pid: Option<u32>,
    #[serde(default)]
    pub ns_tid: Option<u32>,
    /// The container the process runs in (its full id, as the runtime names it) and its
    /// Kubernetes pod's UID; absent from the line outside containers (and in recordings made
    /// before they existed).
    #[serde(default)]
    pub container_id: Option<String>,
    #[serde(default)]
    pub pod_uid: Option<String>,
    /// Innermost frame first.
    pub stack: Vec<String>,
    #[serde(flatten)]
    pub detail: AlertDetail,
    /// The frames behind the stacks of this alert, by JSON field (`stack`, `holder_stack`,
    /// `release_stack`, `waiter_stacks.N.stack`, `owner_stack`, `cycle.N.stack`,
    /// `waker_stack`), with code addresses normalized to (module, file offset): what a recording keeps besides the names, so that a stack can be symbolized
    /// again elsewhere. Not part of the JSON line, which carries the names.
    #[serde(skip)]
    pub frames: Vec<(String, Vec<Frame>)>,
}

/// The kind of an alert and its own fields; serialized as the `kind` tag plus those fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AlertDetail {
    LockHold(LockHold),
    Stall(Stall),
    StallEnd(StallEnd),
    Deadlock(Deadlock),
    ThreadExit(ThreadExit),
    ProcessExit(ProcessExit),
    IdleWait(IdleWait),
    GoroutineWait(GoroutineWait),
    GoroutineStall(GoroutineStall),
    GoroutineLeak(GoroutineLeak),
    GoPanic(GoPanic),
    Degraded(Degraded),
}

/// One hold of a lock that made threads wait longer than the threshold: the holder, the
/// release and the waiters (one alert however many waited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct LockHold {
    /// The futex word waited on.
    #[serde(with = "hex_addr")]
    pub uaddr: u64,
    /// What lock it is, e.g. `"pthread_mutex"`, `"rust std Mutex"`; `"lock"` when unknown.
    pub lock_kind: String,
    /// The lock records its owner and one was seen: `holder_tid` is that owner.
    pub owner_recorded: bool,
    /// A lower bound of the hold: from the earliest waiter's start to the release.
    pub hold_ns: u64,
    pub holder_tid: Option<u32>,
    pub holder_comm: Option<String>,
    /// `"owner"` (recorded in the lock) or `"releaser"` (the thread that woke the first
    /// waiter from a futex call); `None` with no holder.
    pub holder_known_from: Option<String>,
    /// `"running"`, `"blocked"`, `"exited"` or `"unknown"`: what the holder did meanwhile.
    pub holder_state: String,
    /// The syscall it was blocked in (`"blocked"`), e.g. `"read"`.
    pub holder_syscall: Option<String>,
    pub holder_stack: Vec<String>,
    /// On-CPU samples that found it holding the lock.
    pub holder_samples: u32,
    /// The thread that woke the first waiter from a futex call, and its stack then; `None` /
    /// empty when a timer or signal ended that wait.
    pub release_tid: Option<u32>,
    pub release_comm: Option<String>,
    pub release_stack: Vec<String>,
    /// Waits of the episode (each past the threshold).
    pub waiters: u64,
    pub longest_wait_ns: u64,
    pub total_wait_ns: u64,
    /// Distinct waiter stacks, most frequent first.
    pub waiter_stacks: Vec<WaiterStack>,
    /// Waits whose stack is not listed in `waiter_stacks`.
    pub waiter_stacks_omitted: u64,
}

/// Waits of a hold episode that share a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct WaiterStack {
    pub stack: Vec<String>,
    pub count: u64,
    pub longest_ns: u64,
    /// The thread that waited longest with this stack.
    pub comm: String,
}

/// A thread still blocked longer than the threshold (the wait has not ended yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct Stall {
    pub blocked_ns: u64,
    /// What it is stalled on: `"lock"` (a held lock), `"kernel"` (uninterruptible sleep) or
    /// `"away_from_home"` (an idle-class wait at a place the thread does not wait at while
    /// healthy; see the home rule).
    #[serde(default)]
    pub stall_on: String,
    /// The futex word, or `None` for a non-futex syscall.
    #[serde(with = "opt_hex_addr")]
    pub uaddr: Option<u64>,
    /// Syscall name, e.g. `"futex"`, `"vfork"`; `"none (page fault)"` for a thread that
    /// sleeps in the kernel outside any syscall.
    pub syscall: String,
    /// The lock's owner; `None` for a wait in the kernel (uninterruptible sleep).
    pub owner_tid: Option<u32>,
    /// May be empty when the owner's stack could not be taken.
    pub owner_stack: Vec<String>,
    /// For a thread in uninterruptible sleep (D state): its kernel stack, innermost first,
    /// from the sleep function to the syscall entry (e.g. `["wait_for_completion_state",
    /// "kernel_clone", "__do_sys_vfork", ...]`). Empty for a wait on a user-space lock.
    #[serde(default)]
    pub kernel_stack: Vec<String>,
    /// What the lock's owner did since this wait began: `"running"` (sampled on CPU),
    /// `"blocked"` (itself waiting, in `holder_syscall`), `"exited"` or `"unknown"`; `None`
    /// when there is no other owner (a wait in the kernel, a relock).
    #[serde(default)]
    pub holder_state: Option<String>,
    /// The syscall the owner was blocked in (`"read"`, ...), when blocked.
    #[serde(default)]
    pub holder_syscall: Option<String>,
    /// Where the owner was: its blocked wait's stack, or its most frequent on-CPU sample.
    #[serde(default)]
    pub holder_stack: Vec<String>,
    /// On-CPU samples that found the owner running since this wait began.
    #[serde(default)]
    pub holder_samples: u32,
    /// The lock waited for (`"pthread_rwlock (write)"`, `"rust std Mutex"`, ...; `"lock"`
    /// when only a recorded owner made it one); `None` for a wait in the kernel.
    #[serde(default)]
    pub lock_kind: Option<String>,
    /// Whether this kind of lock records its owner: when `false`, `owner_tid` is null
    /// because the lock type keeps no owner, not because nobody holds it.
    #[serde(default)]
    pub owner_recorded: Option<bool>,
    /// For `stall_on: "away_from_home"`: where the thread waits while healthy (its home's
    /// frames, innermost first); empty otherwise, or when its home is its group's.
    #[serde(default)]
    pub home_stack: Vec<String>,
}

/// The wait of a stall away from home ended: how long it lasted in all and who ended it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct StallEnd {
    /// From the first wait of the episode to the end of the last (re-waits included).
    pub blocked_ns: u64,
    pub stall_on: String,
    pub syscall: String,
    /// The thread that woke it last, from its own call (for a lock built on a condition
    /// variable, the releaser); `None` when a timer, a signal or another process ended it.
    pub waker_tid: Option<u32>,
    pub waker_comm: Option<String>,
    pub waker_stack: Vec<String>,
    /// `"thread"` (a thread of its process), `"timer_or_signal"`, `"other_process"`, or
    /// `"unknown"` when the kernel sent no end (its map of stalled threads was full).
    pub woken_by: String,
}

/// Threads waiting on each other in a cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct Deadlock {
    pub cycle: Vec<DeadlockMember>,
}

/// One thread of a deadlock cycle: it waits on `uaddr`, held by `owner_tid` (the next member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct DeadlockMember {
    pub tid: u32,
    pub comm: String,
    #[serde(with = "hex_addr")]
    pub uaddr: u64,
    pub owner_tid: u32,
    pub stack: Vec<String>,
}

/// A thread died while its process lived on (see `thread_exits` for the rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct ThreadExit {
    /// Status passed to exit(2) (0 for a normal return from the start routine).
    pub exit_code: i32,
    /// Name of the signal that killed it, e.g. `"SIGSEGV"`.
    pub signal: Option<String>,
    /// `None` when the thread existed before the observer attached.
    pub lifetime_ns: Option<u64>,
    /// Stack of the creating thread at clone time, innermost first; empty if unknown.
    pub created_by: Vec<String>,
    /// Exits from this creation site so far, this one included (1 for the first).
    pub count: u64,
}

/// The whole process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct ProcessExit {
    /// `None` when killed by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// The thread whose exit ended the process (the caller of exit_group, or the signalled thread).
    pub by_tid: u32,
    /// Why a Go process died: the fatal panic or throw message (e.g. "all goroutines are asleep -
    /// deadlock!"), read from the runtime even when its stderr goes nowhere.
    #[serde(default)]
    pub message: Option<String>,
}

/// Goroutines waited on one sync primitive (Mutex, RWMutex, WaitGroup, Cond, semaphore)
/// longer than the threshold behind one hold: one alert per hold episode. The top-level
/// `goid`/`stack` is the goroutine that waited longest; `waker_stack` names the goroutine that
/// released the lock to the first waiter (it held it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct GoroutineWait {
    pub goid: u64,
    pub wait_reason: String,
    /// The longest wait of the episode.
    pub duration_ns: u64,
    /// Where the longest waiter was created (`go` statement), innermost first.
    pub created_by: Vec<String>,
    pub waker_goid: Option<u64>,
    pub waker_stack: Vec<String>,
    /// `gopark`'s lock argument for the waits (the semaphore's queue lock), 0 when unknown.
    #[serde(default, with = "hex_addr")]
    pub lock: u64,
    /// From the earliest waiter's start to the release: a lower bound of the hold.
    #[serde(default)]
    pub hold_ns: u64,
    /// Waits of the episode, each past the threshold.
    #[serde(default = "one")]
    pub waiters: u64,
    #[serde(default)]
    pub total_wait_ns: u64,
    /// Distinct waiter stacks, most frequent first.
    #[serde(default)]
    pub waiter_stacks: Vec<GoWaiterStack>,
    #[serde(default)]
    pub waiter_stacks_omitted: u64,
    /// When no probe saw the release (park probes off): the goroutine that likely held the lock.
    #[serde(flatten)]
    pub likely_holder: LikelyHolder,
    /// The longest waiter's pprof labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}

/// A goroutine named as the likely holder of a lock no probe saw released (inside a function
/// that locks the same mutex, or past the waiters' own `Lock()` call), and why: evidence, not
/// proof. All absent when none was found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikelyHolder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likely_holder_goid: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub likely_holder_stack: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likely_holder_why: Option<String>,
}

impl From<Option<(u64, Vec<String>, String)>> for LikelyHolder {
    fn from(found: Option<(u64, Vec<String>, String)>) -> Self {
        match found {
            Some((goid, stack, why)) => LikelyHolder {
                likely_holder_goid: Some(goid),
                likely_holder_stack: stack,
                likely_holder_why: Some(why),
            },
            None => LikelyHolder::default(),
        }
    }
}

/// Waits of a goroutine hold episode that share a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoWaiterStack {
    pub stack: Vec<String>,
    pub count: u64,
    pub longest_ns: u64,
    /// Distinct pprof label sets of these waiters (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<BTreeMap<String, String>>,
}

/// A goroutine still waiting on a sync primitive after --stall-after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct GoroutineStall {
    pub goid: u64,
    pub wait_reason: String,
    pub blocked_ns: u64,
    pub created_by: Vec<String>,
    /// For a mutex wait: a goroutine that likely holds the mutex.
    #[serde(flatten)]
    pub likely_holder: LikelyHolder,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Goroutines created at one site pile up parked on channels or select: a leak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct GoroutineLeak {
    pub created_by: Vec<String>,
    pub wait_reason: String,
    /// Goroutines from this site parked now.
    pub count: u64,
    /// How many more than `window_ns` ago.
    pub growth: u64,
    pub window_ns: u64,
    /// The labels of the goroutine whose stack is the alert's `stack`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A Go panic; `recovered` true means a deferred recover() swallowed it and the goroutine
/// carried on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct GoPanic {
    pub goid: u64,
    /// The panic value's text for strings and errors; `None` for other values.
    pub message: Option<String>,
    pub recovered: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A long wait that is not on a held lock (condition variable, join, sleep, poll, read): reported
/// only on request, since idle threads wait by design.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct IdleWait {
    pub duration_ns: u64,
    /// Syscall name, e.g. `"futex"`, `"epoll_wait"`.
    pub syscall: String,
    /// What kind of wait, e.g. `"condvar"`, `"sleep"`, `"poll"`.
    pub wait_class: String,
    pub waker_tid: Option<u32>,
}

/// observer limited itself (a full ring buffer or map, the Go probe budget): what it reports
/// meanwhile is incomplete. One alert when it starts, one per interval while it goes on (with
/// the losses of that interval), one when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub struct Degraded {
    /// What limit, e.g. `"ring_buffer_full"`, `"go_probe_budget"`.
    pub reason: String,
    /// `"started"`, `"continuing"` or `"ended"`.
    pub state: String,
    /// Losses in the window this alert covers (`ended`: the whole period).
    pub count: u64,
    pub window_ns: u64,
    /// Losses since the period began.
    pub total: u64,
    /// When the period began (RFC 3339 UTC).
    pub since: String,
    /// What it means for the user, in words.
    pub detail: String,
}

/// Every alert kind, as [`AlertDetail::kind`] names them (metrics start a series at 0 for each).
pub const KINDS: [&str; 12] = [
    "lock_hold",
    "stall",
    "stall_end",
    "deadlock",
    "thread_exit",
    "process_exit",
    "idle_wait",
    "goroutine_wait",
    "goroutine_stall",
    "goroutine_leak",
    "go_panic",
    "degraded",
];

impl AlertDetail {
    /// The `kind` tag as written in JSON; one of [`KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            AlertDetail::LockHold(_) => "lock_hold",
            AlertDetail::Stall(_) => "stall",
            AlertDetail::StallEnd(_) => "stall_end",
            AlertDetail::Deadlock(_) => "deadlock",
            AlertDetail::ThreadExit(_) => "thread_exit",
            AlertDetail::ProcessExit(_) => "process_exit",
            AlertDetail::IdleWait(_) => "idle_wait",
            AlertDetail::GoroutineWait(_) => "goroutine_wait",
            AlertDetail::GoroutineStall(_) => "goroutine_stall",
            AlertDetail::GoroutineLeak(_) => "goroutine_leak",
            AlertDetail::GoPanic(_) => "go_panic",
            AlertDetail::Degraded(_) => "degraded",
        }
    }
}

impl Alert {
    pub fn kind(&self) -> &'static str {
        self.detail.kind()
    }

    /// Keeps `frames` as the frames behind stack field `field`, when any of them has an
    /// address (frames that are only names add nothing to the names in the line).
    pub fn keep_frames(&mut self, field: impl Into<String>, frames: Vec<Frame>) {
        if frames.iter().any(|f| f.addr.is_some()) {
            self.frames.push((field.into(), frames));
        }
    }

    /// The alert as one JSON object on one line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        // Plain data with string keys: serde_json cannot fail on it.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one line of the alert stream (surrounding whitespace allowed).
    pub fn from_json_line(line: &str) -> Result<Alert, serde_json::Error> {
        serde_json::from_str(line.trim())
    }
}

impl Serialize for Alert {
    // Hand-written only to put `kind` first; a derived flatten would emit it after `stack`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            kind: &'static str,
            time: &'a str,
            pid: u32,
            tid: u32,
            comm: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            ns_pid: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ns_tid: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            container_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pod_uid: Option<&'a str>,
            stack: &'a [String],
            #[serde(flatten)]
            detail: Body<'a>,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Body<'a> {
            LockHold(&'a LockHold),
            Stall(&'a Stall),
            StallEnd(&'a StallEnd),
            Deadlock(&'a Deadlock),
            ThreadExit(&'a ThreadExit),
            ProcessExit(&'a ProcessExit),
            IdleWait(&'a IdleWait),
            GoroutineWait(&'a GoroutineWait),
            GoroutineStall(&'a GoroutineStall),
            GoroutineLeak(&'a GoroutineLeak),
            GoPanic(&'a GoPanic),
            Degraded(&'a Degraded),
        }
        let detail = match &self.detail {
            AlertDetail::LockHold(d) => Body::LockHold(d),
            AlertDetail::Stall(d) => Body::Stall(d),
            AlertDetail::StallEnd(d) => Body::StallEnd(d),
            AlertDetail::Deadlock(d) => Body::Deadlock(d),
            AlertDetail::ThreadExit(d) => Body::ThreadExit(d),
            AlertDetail::ProcessExit(d) => Body::ProcessExit(d),
            AlertDetail::IdleWait(d) => Body::IdleWait(d),
            AlertDetail::GoroutineWait(d) => Body::GoroutineWait(d),
            AlertDetail::GoroutineStall(d) => Body::GoroutineStall(d),
            AlertDetail::GoroutineLeak(d) => Body::GoroutineLeak(d),
            AlertDetail::GoPanic(d) => Body::GoPanic(d),
            AlertDetail::Degraded(d) => Body::Degraded(d),
        };
        Wire {
            kind: self.kind(),
            time: &self.time,
            pid: self.pid,
            tid: self.tid,
            comm: &self.comm,
            ns_pid: self.ns_pid,
            ns_tid: self.ns_tid,
            container_id: self.container_id.as_deref(),
            pod_uid: self.pod_uid.as_deref(),
            stack: &self.stack,
            detail,
        }
        .serialize(serializer)
    }
}

/// `time` field value: RFC 3339 UTC with milliseconds, e.g. `2026-11-26T10:04:05.123Z`.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Linux x86_64 signal name: `SIGSEGV`, `SIGRTMIN+3`; unnamed numbers as `SIG<n>`.
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    // glibc reserves 32 and 33 for itself, so user-visible SIGRTMIN is 34 (as `kill -l` shows).
    const RTMIN: i32 = 34;
    const RTMAX: i32 = 64;
    match sig {
        1..=31 => NAMES[(sig - 1) as usize].to_string(),
        RTMIN => "SIGRTMIN".to_string(),
        35..RTMAX => format!("SIGRTMIN+{}", sig - RTMIN),
        RTMAX => "SIGRTMAX".to_string(),
        _ => format!("SIG{sig}"),
    }
}

mod hex_addr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{addr:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<u64, String> {
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| format!("address {text:?} must start with 0x"))?;
        u64::from_str_radix(digits, 16).map_err(|e| format!("address {text:?}: {e}"))
    }
}

mod opt_hex_addr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => super::hex_addr::serialize(a, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::hex_addr::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
