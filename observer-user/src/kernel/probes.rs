//! Loading and attaching the kernel programs: the only module that knows aya.
//!
//! Programs are attached by aya links owned by the `Ebpf` object; dropping `Probes` (normal
//! exit, Ctrl-C, error) detaches every one of them, and the kernel does the same if observer is
//! killed, because nothing is pinned.

use std::path::Path;

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::{BtfTracePoint, TracePoint, UProbe},
    Btf, Ebpf, EbpfLoader,
};
use observer_common::{
    counter, watch_flag, AggKey, AggValue, CodePageKey, CodePageSites, GoAggKey, GoSampleKey,
    InFlight,
};
use thiserror::Error;

use crate::kernel::events::EventRing;
use crate::kernel::holder_sampler::{self, SamplerError};
use crate::kernel::kernel_log::{self, KernelLogConfig, KernelLogError, KernelLogReader};
use crate::kernel::program_barrier::ProgramBarrier;
use crate::kernel::tracefs;

mod go_probes;

/// Whether a syscall somewhere under `e` answered EACCES or EPERM.
fn permission_denied(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// `BPF_NOEXIST` map-update flag: insert only if absent.
const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST` map-update flag: update only if present.
const BPF_EXIST: u64 = 2;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer"));

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("the eBPF object is empty: observer was built with AYA_BUILD_SKIP=1; rebuild with `cargo xtask build`")]
    NoObject,
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program `{name}`: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("eBPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program `{0}` is missing from the object")]
    MissingProgram(&'static str),
    #[error("reading kernel BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[source] aya::BtfError),
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    /// Not a `#[source]`: the message carries it, printed once.
    #[error("kernel struct offsets: {0}")]
    KernelBtf(crate::kernel::kernel_btf::BtfError),
    /// Since Linux 6.16 (and the stable kernels it was backported to) creating a uprobe through
    /// perf_event_open takes CAP_SYS_ADMIN, not CAP_PERFMON: uprobes write into the text of
    /// every process mapping the file, and one placed mid-instruction corrupts it.
    #[error(
        "the kernel refused to create uprobes ({functions}: permission denied): since Linux \
         6.16 that takes CAP_SYS_ADMIN, which observer lacks; grant it (deploy/ does) or pass \
         --no-go to go without the goroutine view"
    )]
    UprobesDenied { functions: String },
    #[error("goroutine probes failed ({0}); none kept")]
    GoProbes(String),
    #[error("the kernel log (--kernel-log): {0}")]
    KernelLog(#[from] KernelLogError),
    /// Not a `#[source]`: the message carries it, printed once.
    #[error("polling the event ring buffer: {0}")]
    EventRing(std::io::Error),
}

/// What the probes need to know before they are loaded.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The event ring buffer's size in bytes (`--ring-size`, a power of two); `None`: the
    /// object's own (16 MiB).
    pub ring_bytes: Option<u32>,
    /// Waits at least this long become events (with stacks); shorter ones are only summed.
    pub threshold_ns: u64,
    /// Send long idle waits as events too (`--report-idle`).
    pub report_idle: bool,
    /// `observer sidecar`: child processes of watched ones are watched from birth, and every
    /// exec on the host is reported.
    pub sidecar: bool,
    /// The probes' own diagnostics (`--kernel-log`); `None`: off, and free.
    pub kernel_log: Option<KernelLogConfig>,
}

/// Per-CPU counters summed over CPUs (indexes in `observer_common::counter`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub events_dropped: u64,
    pub agg_dropped: u64,
    pub inflight_dropped: u64,
    pub stack_missing: u64,
    pub waits_started: u64,
    pub waits_long: u64,
    /// Goroutine parks seen by the Go probes (all Go processes).
    pub go_parks: u64,
    /// Goroutine short waits not summed (the Go aggregate map was full).
    pub go_agg_dropped: u64,
    /// Sidecar: new processes that could not be watched (the kernel's watch map was full).
    pub watch_full: u64,
    /// Short waits sent with a stack copy for the profile, and those not sent (the ring buffer
    /// was a quarter full: samples leave the rest to the events that matter more).
    pub short_samples: u64,
    pub short_samples_lost: u64,
}

pub struct Probes {
    ebpf: Ebpf,
    /// Goroutine uprobes, per Go process, so they can be taken off one process alone.
    go_links: Vec<(u32, &'static str, aya::programs::uprobe::UProbeLinkId)>,
    /// Per Go process: its executable and the per-park attach points, to put those probes
    /// back after the budget took them off.
    go_park_points: std::collections::HashMap<u32, (std::path::PathBuf, Vec<GoAttachPoint>)>,
    /// The copy of the aggregate maps the programs add to now (0 or 1, see `AGG_SIDE`).
    agg_side: u32,
    /// `None` when the kernel refused the barrier's maps: draining then waits a fixed time.
    barrier: Option<ProgramBarrier>,
    /// Reads the probes' diagnostics while it lives; `None` when they are off.
    _kernel_log: Option<KernelLogReader>,
}

/// What the programs summed since the last drain.
#[derive(Debug, Default)]
pub struct Aggregates {
    /// Short thread waits.
    pub waits: Vec<(AggKey, AggValue)>,
    /// Exact goroutine short-wait totals per (process, wait reason).
    pub go_totals: Vec<(GoAggKey, AggValue)>,
    /// Sampled goroutine short waits per (process, wait reason, stack).
    pub go_samples: Vec<(GoSampleKey, AggValue)>,
}

/// Wait for in-flight programs when the barrier is unavailable: programs run for
/// microseconds, so this is ample unless a CPU is stopped mid-program.
const FALLBACK_PROGRAM_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

struct Offsets {
    waking_pid: u32,
    waking_comm: u32,
    fork_child_pid: u32,
    exit_group_dead: u32,
    deliver_sig: u32,
    deliver_code: u32,
    deliver_handler: u32,
}

impl Offsets {
    fn read(tracefs_dir: &Path) -> Result<Self, ProbeError> {
        let f = |cat, ev, field| tracefs::field_offset(tracefs_dir, cat, ev, field);
        Ok(Self {
            waking_pid: f("sched", "sched_waking", "pid")?,
            waking_comm: f("sched", "sched_waking", "comm")?,
            fork_child_pid: f("sched", "sched_process_fork", "child_pid")?,
            exit_group_dead: f("sched", "sched_process_exit", "group_dead")?,
            deliver_sig: f("signal", "signal_deliver", "sig")?,
            deliver_code: f("signal", "signal_deliver", "code")?,
            deliver_handler: f("signal", "signal_deliver", "sa_handler")?,
        })
    }
}

/// Go uprobe programs, loaded up front and attached per Go process, each with the runtime
/// functions it goes on.
pub const GO_PROBES: [(&str, &[&str]); 5] = [
    ("go_park", &["runtime.gopark"]),
    // goready is inlined into its callers in recent Go; ready() is what they call.
    ("go_ready", &["runtime.ready"]),
    ("go_panic", &["runtime.gopanic"]),
    ("go_throw", &["runtime.throw", "runtime.fatal"]),
    ("go_recovery", &["runtime.recovery"]),
];

/// The Go probes that fire on every goroutine park and wake-up (the rest fire per panic).
pub const GO_PER_PARK_PROBES: [&str; 2] = ["go_park", "go_ready"];

/// Where to put one Go uprobe: a program and a file offset in the executable.
#[derive(Debug, Clone)]
pub struct GoAttachPoint {
    pub program: &'static str,
    /// The runtime function, for messages.
    pub function: String,
    pub file_offset: u64,
}

/// Classic tracepoints: (program name, category, event).
const TRACEPOINTS: [(&str, &str, &str); 5] = [
    ("sched_waking", "sched", "sched_waking"),
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("signal_deliver", "signal", "signal_deliver"),
];

impl Probes {
    /// Loads and attaches every program. Nothing is watched until [`Probes::watch`].
    pub fn load(cfg: &ProbeConfig, tracefs_dir: &Path) -> Result<Self, ProbeError> {
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        raise_memlock_limit();
        let off = Offsets::read(tracefs_dir)?;
        let task =
            crate::kernel::kernel_btf::TaskOffsets::from_sys_fs().map_err(ProbeError::KernelBtf)?;
        let mut loader = EbpfLoader::new();
        // Tests shrink the ring buffer to prove that overflow is counted and reported.
        if let Some(bytes) = cfg.ring_bytes.or_else(|| {
            std::env::var("OBSERVER_RING_BUFFER_BYTES")
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|b| b.is_power_of_two() && *b >= 4096)
        }) {
            loader.map_max_entries("EVENTS", bytes);
        }
        let log_level = cfg
            .kernel_log
            .map_or(0, |k| kernel_log::kernel_level(k.level));
        if log_level == 0 {
            // Nothing is ever written to aya-log's ring buffer then: the smallest one will do.
            loader.map_max_entries("AYA_LOGS", kernel_log::smallest_ring_bytes());
        }
        let mut ebpf = loader
            .override_global("THRESHOLD_NS", &cfg.threshold_ns, true)
            .override_global("REPORT_IDLE", &u32::from(cfg.report_idle), true)
            .override_global("SIDECAR", &u32::from(cfg.sidecar), true)
            .override_global("WAKING_PID_OFFSET", &off.waking_pid, true)
            .override_global("WAKING_COMM_OFFSET", &off.waking_comm, true)
            .override_global("FORK_CHILD_PID_OFFSET", &off.fork_child_pid, true)
            .override_global("EXIT_GROUP_DEAD_OFFSET", &off.exit_group_dead, true)
            .override_global("DELIVER_SIG_OFFSET", &off.deliver_sig, true)
            .override_global("DELIVER_CODE_OFFSET", &off.deliver_code, true)
            .override_global("DELIVER_HANDLER_OFFSET", &off.deliver_handler, true)
            .override_global("TASK_FLAGS_OFFSET", &task.flags, true)
            .override_global("TASK_PENDING_SIGNAL_OFFSET", &task.pending_signal, true)
            .override_global("KERNEL_LOG_LEVEL", &u32::from(log_level), true)
            .override_global("AYA_LOG_LEVEL", &log_level, true)
            .load(OBJECT)
            .map_err(ProbeError::Load)?;
        // Before any program is attached, so that nothing they log is missed.
        let kernel_log = match cfg.kernel_log.filter(|_| log_level != 0) {
            Some(k) => Some(KernelLogReader::start(&mut ebpf, k.sink)?),
            None => None,
        };

        let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;
        let program = |source| ProbeError::Program {
            name: "sched_switch",
            source,
        };
        let switch: &mut BtfTracePoint = ebpf
            .program_mut("sched_switch")
            .ok_or(ProbeError::MissingProgram("sched_switch"))?
            .try_into()
            .map_err(program)?;
        switch.load("sched_switch", &btf).map_err(program)?;
        switch.attach().map_err(program)?;

        for (name, category, event) in TRACEPOINTS {
            let err = |source| ProbeError::Program { name, source };
            let tp: &mut TracePoint = ebpf
                .program_mut(name)
                .ok_or(ProbeError::MissingProgram(name))?
                .try_into()
                .map_err(err)?;
            tp.load().map_err(err)?;
            tp.attach(category, event).map_err(err)?;
        }
        for (name, _) in GO_PROBES {
            let err = |source| ProbeError::Program { name, source };
            let p: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or(ProbeError::MissingProgram(name))?
                .try_into()
                .map_err(err)?;
            p.load().map_err(err)?;
        }
        // Without it a lock holder that computes is reported as "unknown", not wrongly.
        if let Err(e) = holder_sampler::attach(&mut ebpf) {
            log::warn!("lock holders will not be sampled on CPU: {e}");
        }
        let barrier = match ProgramBarrier::new() {
            Ok(b) => Some(b),
            Err(e) => {
                log::warn!(
                    "could not create the maps that wait for running eBPF programs ({e}); \
                     draining the aggregates waits {} ms instead",
                    FALLBACK_PROGRAM_WAIT.as_millis()
                );
                None
            }
        };
        Ok(Self {
            ebpf,
            go_links: Vec::new(),
            go_park_points: std::collections::HashMap::new(),
            agg_side: 0,
            barrier,
            _kernel_log: kernel_log,
        })
    }

    /// Starts observing every thread of process `tgid`, present and future.
    pub fn watch(&mut self, tgid: u32) -> Result<(), ProbeError> {
        let mut map: HashMap<&mut MapData, u32, u32> = self.map_mut("WATCHED")?;
        map.insert(tgid, watch_flag::WATCHED, 0)
            .map_err(|source| ProbeError::Map {
                name: "WATCHED",
                source,
            })
    }

    /// Marks a watched process as a Go program (or no longer one, after an exec): the kernel
    /// then leaves its runtime's scheduler waits out (`watch_flag::GO_RUNTIME`). Best effort:
    /// unmarked, they are recorded and judged idle as before.
    pub fn set_go_runtime(&mut self, tgid: u32, go: bool) {
        let flags = if go {
            watch_flag::WATCHED | watch_flag::GO_RUNTIME
        } else {
            watch_flag::WATCHED
        };
        if let Ok(mut map) = self.map_mut::<HashMap<&mut MapData, u32, u32>>("WATCHED") {
            // BPF_EXIST: only a process still watched (its exit removes the entry).
            const BPF_EXIST: u64 = 2;
            let _ = map.insert(tgid, flags, BPF_EXIST);
        }
    }

    /// Processes the kernel watches now (sidecar mode adds children by itself).
    pub fn watched(&self) -> Vec<u32> {
        match self.map::<HashMap<&MapData, u32, u32>>("WATCHED") {
            Ok(map) => map.keys().filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn unwatch(&mut self, tgid: u32) {
        if let Ok(mut map) = self.map_mut::<HashMap<&mut MapData, u32, u32>>("WATCHED") {
            let _ = map.remove(&tgid);
        }
    }

    /// Writes a process's code-site pages (which lock a futex wait is for, see
    /// `observer_common::CodeSite`), then removes the `stale` pages of its previous table.
    /// Stops at the first page the kernel refuses (a full table) and says how many were
    /// written.
    pub fn set_code_sites(
        &mut self,
        pages: &[(CodePageKey, CodePageSites)],
        stale: &[CodePageKey],
    ) -> Result<usize, ProbeError> {
        let mut map: HashMap<&mut MapData, CodePageKey, CodePageSites> =
            self.map_mut("CODE_SITES")?;
        for key in stale {
            let _ = map.remove(key);
        }
        for (i, (key, sites)) in pages.iter().enumerate() {
            if let Err(source) = map.insert(key, sites, 0) {
                log::warn!(
                    "code-site table: page {} of {} refused: {source}",
                    i + 1,
                    pages.len()
                );
                return Ok(i);
            }
        }
        Ok(pages.len())
    }

    /// The ring buffer of rare events; call once, from within the tokio runtime.
    pub fn take_events(&mut self) -> Result<EventRing, ProbeError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(ProbeError::MissingMap("EVENTS"))?;
        let ring = RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            name: "EVENTS",
            source,
        })?;
        EventRing::new(ring).map_err(ProbeError::EventRing)
    }

    /// Samples lock holder `tid` of process `tgid` on CPU from now on.
    pub fn sample_holder(&mut self, tgid: u32, tid: u32) -> Result<(), SamplerError> {
        holder_sampler::add(&mut self.ebpf, tgid, tid)
    }

    /// Stops sampling lock holder `tid`.
    pub fn unsample_holder(&mut self, tid: u32) {
        holder_sampler::remove(&mut self.ebpf, tid);
    }

    /// Has the kernel send the end of thread `tid`'s waits (it is stalled away from home), so
    /// the stall's end names its waker. Fails when `MAX_AWAY_STALLED` threads are marked.
    pub fn mark_away_stalled(&mut self, tgid: u32, tid: u32) -> Result<(), ProbeError> {
        let mut map: HashMap<&mut MapData, u32, u32> = self.map_mut("AWAY_STALLED")?;
        map.insert(tid, tgid, 0).map_err(|source| ProbeError::Map {
            name: "AWAY_STALLED",
            source,
        })
    }

    /// Undoes [`Self::mark_away_stalled`]; a thread not marked is no error.
    pub fn unmark_away_stalled(&mut self, tid: u32) {
        if let Ok(mut map) = self.map_mut::<HashMap<&mut MapData, u32, u32>>("AWAY_STALLED") {
            let _ = map.remove(&tid);
        }
    }

    /// Threads blocked right now.
    pub fn in_flight(&self) -> Result<Vec<(u32, InFlight)>, ProbeError> {
        let map: HashMap<&MapData, u32, InFlight> = self.map("IN_FLIGHT")?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    /// A handle on the in-flight table of its own (a duplicate of the map's descriptor), for
    /// a thread other than the session's to read.
    pub fn in_flight_table(&self) -> Result<InFlightTable, ProbeError> {
        const NAME: &str = "IN_FLIGHT";
        let map = self.ebpf.map(NAME).ok_or(ProbeError::MissingMap(NAME))?;
        let (aya::maps::Map::HashMap(data) | aya::maps::Map::LruHashMap(data)) = map else {
            return Err(ProbeError::MissingMap(NAME));
        };
        let fd = std::os::fd::AsFd::as_fd(data.fd())
            .try_clone_to_owned()
            .map_err(|e| ProbeError::Map {
                name: NAME,
                source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "dup",
                    io_error: e,
                }),
            })?;
        let data = MapData::from_fd(fd).map_err(|source| ProbeError::Map { name: NAME, source })?;
        let map = HashMap::try_from(aya::maps::Map::LruHashMap(data))
            .map_err(|source| ProbeError::Map { name: NAME, source })?;
        Ok(InFlightTable { map })
    }

    /// Adds an in-flight entry for a thread that was blocked before we attached, unless the
    /// kernel already has one.
    pub fn seed_in_flight(&mut self, tid: u32, entry: &InFlight) -> Result<(), ProbeError> {
        let mut map: HashMap<&mut MapData, u32, InFlight> = self.map_mut("IN_FLIGHT")?;
        map.insert(tid, *entry, BPF_NOEXIST)
            .map_err(|source| ProbeError::Map {
                name: "IN_FLIGHT",
                source,
            })
    }

    /// Replaces the in-flight entry of `tid` with `entry` if it is still the wait that began at
    /// `entry.start_ns` (a wait classified after it began); false when it ended meanwhile.
    pub fn reclassify_in_flight(&mut self, tid: u32, entry: &InFlight) -> bool {
        let Ok(mut map) = self.map_mut::<HashMap<&mut MapData, u32, InFlight>>("IN_FLIGHT") else {
            return false;
        };
        map.get(&tid, 0).is_ok_and(|e| e.start_ns == entry.start_ns)
            && map.insert(tid, *entry, BPF_EXIST).is_ok()
    }

    /// Removes a seeded entry again, if it is still the one seeded at `start_ns`.
    pub fn unseed_in_flight(&mut self, tid: u32, start_ns: u64) {
        if let Ok(mut map) = self.map_mut::<HashMap<&mut MapData, u32, InFlight>>("IN_FLIGHT") {
            if map.get(&tid, 0).is_ok_and(|e| e.start_ns == start_ns) {
                let _ = map.remove(&tid);
            }
        }
    }

    /// Takes what the programs summed since the last call out of the kernel: points them at
    /// the other copy of the maps, waits until none still adds to this one, then reads and
    /// empties it (so the maps stay small on long runs, and no update is lost in between).
    /// Per-CPU values are added up. Blocks for an RCU grace period (a few ms).
    pub fn drain_aggregates(&mut self) -> Result<Aggregates, ProbeError> {
        let drained = self.agg_side;
        let next = drained ^ 1;
        let mut side: Array<&mut MapData, u32> = self.map_mut("AGG_SIDE")?;
        side.set(0, next, 0).map_err(|source| ProbeError::Map {
            name: "AGG_SIDE",
            source,
        })?;
        self.agg_side = next;
        // From here no program that could still add to the drained copy is running.
        match &self.barrier {
            Some(b) => {
                if let Err(e) = b.wait() {
                    log::warn!("waiting for running eBPF programs failed ({e})");
                    std::thread::sleep(FALLBACK_PROGRAM_WAIT);
                }
            }
            None => std::thread::sleep(FALLBACK_PROGRAM_WAIT),
        }
        let (waits, go_totals, go_samples) = if drained == 0 {
            ("AGG0", "GO_AGG0", "GO_SAMPLES0")
        } else {
            ("AGG1", "GO_AGG1", "GO_SAMPLES1")
        };
        Ok(Aggregates {
            waits: drain_per_cpu(self.map_mut(waits)?)?,
            go_totals: drain_per_cpu(self.map_mut(go_totals)?)?,
            go_samples: drain_per_cpu(self.map_mut(go_samples)?)?,
        })
    }

    /// Frame-pointer user stack for an id from the kernel, innermost first.
    pub fn stack(&self, stack_id: i32) -> Option<Vec<u64>> {
        if stack_id < 0 {
            return None;
        }
        let map: StackTraceMap<&MapData> = self.map("STACKS").ok()?;
        let trace = map.get(&(stack_id as u32), 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Kernel stack of an uninterruptible wait for an id from the kernel, innermost first.
    pub fn kernel_stack(&self, stack_id: i32) -> Option<Vec<u64>> {
        if stack_id < 0 {
            return None;
        }
        let map: StackTraceMap<&MapData> = self.map("KERNEL_STACKS").ok()?;
        let trace = map.get(&(stack_id as u32), 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Whether a joiner was waiting for thread `tid` when it exited (and forget it).
    pub fn take_joined(&mut self, tid: u32) -> bool {
        match self.map_mut::<HashMap<&mut MapData, u32, u32>>("JOINED") {
            Ok(mut map) => {
                let found = map.get(&tid, 0).is_ok();
                if found {
                    let _ = map.remove(&tid);
                }
                found
            }
            Err(_) => false,
        }
    }

    pub fn counters(&self) -> Counters {
        let Ok(map) = self.map::<PerCpuArray<&MapData, u64>>("COUNTERS") else {
            return Counters::default();
        };
        let sum = |i: u32| {
            map.get(&i, 0)
                .map(|values| values.iter().sum::<u64>())
                .unwrap_or(0)
        };
        Counters {
            events_dropped: sum(counter::EVENTS_DROPPED),
            agg_dropped: sum(counter::AGG_DROPPED),
            inflight_dropped: sum(counter::INFLIGHT_DROPPED),
            // User and kernel stacks alike: a stall or wait reported without one.
            stack_missing: sum(counter::STACK_MISSING) + sum(counter::KSTACK_MISSING),
            waits_started: sum(counter::WAITS_STARTED),
            waits_long: sum(counter::WAITS_LONG),
            go_parks: sum(counter::GO_PARKS),
            go_agg_dropped: sum(counter::GO_AGG_DROPPED),
            watch_full: sum(counter::WATCH_FULL),
            short_samples: sum(counter::SHORT_SAMPLES),
            short_samples_lost: sum(counter::SHORT_SAMPLES_LOST),
        }
    }

    fn map<'a, M>(&'a self, name: &'static str) -> Result<M, ProbeError>
    where
        M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map(name).ok_or(ProbeError::MissingMap(name))?;
        M::try_from(map).map_err(|source| ProbeError::Map { name, source })
    }

    fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, ProbeError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(ProbeError::MissingMap(name))?;
        M::try_from(map).map_err(|source| ProbeError::Map { name, source })
    }
}

/// Reads every key of a per-CPU aggregate, sums the CPUs, and deletes what it read. Only for
/// the copy no program writes (see `Probes::drain_aggregates`).
fn drain_per_cpu<K: aya::Pod + Eq>(
    mut map: PerCpuHashMap<&mut MapData, K, AggValue>,
) -> Result<Vec<(K, AggValue)>, ProbeError> {
    let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Ok(values) = map.get(&key, 0) {
            let mut sum = AggValue::default();
            for v in values.iter() {
                sum.count += v.count;
                sum.total_ns += v.total_ns;
                for (s, b) in sum.bins.iter_mut().zip(v.bins) {
                    *s = s.saturating_add(b);
                }
            }
            out.push((key, sum));
        }
        let _ = map.remove(&key);
    }
    Ok(out)
}

/// Kernels >= 5.11 account BPF memory to the cgroup, so a failed raise is harmless there:
/// warn, never abort (it fails without CAP_SYS_RESOURCE).
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

/// The in-flight table (thread id -> its wait), readable from any thread.
pub struct InFlightTable {
    map: HashMap<MapData, u32, InFlight>,
}

impl InFlightTable {
    /// Every wait in flight now (two system calls per entry).
    pub fn entries(&self) -> Vec<(u32, InFlight)> {
        self.map.iter().filter_map(Result::ok).collect()
    }

    /// The wait of `tid` in flight now, if any.
    pub fn get(&self, tid: u32) -> Option<InFlight> {
        self.map.get(&tid, 0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perf_event_open_error(errno: i32) -> aya::programs::ProgramError {
        aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "perf_event_open",
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    /// aya wraps the errno two levels down: a refusal must still be told from other failures.
    #[test]
    fn a_refused_uprobe_is_told_from_other_failures() {
        assert!(permission_denied(&perf_event_open_error(libc::EACCES)));
        assert!(permission_denied(&perf_event_open_error(libc::EPERM)));
        assert!(!permission_denied(&perf_event_open_error(libc::EINVAL)));
        assert!(!permission_denied(&perf_event_open_error(libc::ENOENT)));
    }
}
