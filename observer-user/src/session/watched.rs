//! The processes a session observes: taking one on (watching it in the kernel, seeding the
//! threads already blocked, attaching the goroutine probes to a Go program) and letting one go.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use anyhow::Result;
use observer_common::ExecEvent;

use super::Session;
use crate::{
    detect::gowatch::GoWatch, kernel::events::comm_str, proc::procinfo, proc::seed,
    proc::target::Launched, session::goattach,
};
use crate::{proc::scope::Scope, stacks::lock_sites::ProcessSites, util::clock::monotonic_ns};

/// One observed process.
pub(super) struct WatchedProcess {
    pub name: String,
    /// Its pid inside its own pid namespace, when that is not the host's.
    pub ns_pid: Option<u32>,
    /// Its container and pod, read at adoption and again when it runs a new program (alerts,
    /// metrics and profiles carry them).
    pub identity: crate::proc::container::ContainerIdentity,
    /// A Go program: its futex waits are scheduler idling, never lock waits, whether or not
    /// the goroutine probes are on.
    pub is_go: bool,
    /// Goroutine-level observation.
    pub go: Option<GoWatch>,
    /// Executable path and GNU build id, read while it runs (pprof mapping, recording).
    pub executable: Option<(PathBuf, Option<String>)>,
    /// (device, inode) of the program it runs (or is about to exec), to tell on an exec
    /// whether the program changed.
    program_id: Option<(u64, u64)>,
    /// Its per-park goroutine probes' schedule under --go-probe-budget (`None`: always on,
    /// or not a Go process).
    pub go_duty: Option<crate::detect::goduty::DutyCycle>,
    /// Its per-park goroutine probes are never on (--go-probe-budget 0).
    pub go_parks_off: bool,
    /// Part of its goroutine profile was scaled up from duty-cycled probes.
    pub go_profile_scaled: bool,
    /// Goroutine snapshots taken while its per-park probes are off.
    pub go_snapshots: super::go_snapshots::SnapshotSchedule,
    /// When it started (ns since boot), for the host-mode thread-exit rule.
    pub start_ns: Option<u64>,
    /// In a pid namespace: thread ids as the process sees them (glibc writes those into its
    /// mutexes as owners) -> host thread ids.
    ns_tids: HashMap<u32, u32>,
    /// Its lock-recognition table in the kernel.
    pub code_sites: super::code_sites::CodeSitesState,
}

impl WatchedProcess {
    /// Its per-park goroutine probes are off, for good or at times: goroutines are followed
    /// from memory snapshots.
    pub fn follows_goroutines_from_memory(&self) -> bool {
        self.go_parks_off || self.go_duty.as_ref().is_some_and(|d| d.cycling())
    }

    fn new(pid: u32) -> Self {
        Self {
            name: procinfo::comm_of(pid).unwrap_or_else(|| format!("pid{pid}")),
            ns_pid: procinfo::ns_id(pid, pid),
            identity: crate::proc::container::identity_of(pid),
            is_go: false,
            go: None,
            executable: None,
            program_id: None,
            go_duty: None,
            go_parks_off: false,
            go_profile_scaled: false,
            go_snapshots: Default::default(),
            ns_tids: HashMap::new(),
            code_sites: Default::default(),
            start_ns: procinfo::start_time_ns(pid),
        }
    }
}

pub(super) struct ThreadInfo {
    pub tgid: u32,
    pub comm: String,
}

/// Host mode bookkeeping.
#[derive(Default)]
pub(super) struct Discovery {
    /// Processes the filter turned down (until they exec or exit).
    rejected: HashSet<u32>,
    /// Executables known not to be Go programs, by (device, inode): a host runs the same
    /// few binaries many times, and opening one is not free.
    not_go: HashSet<(u64, u64)>,
    /// Executables whose goroutine probes failed, not to be retried for every process.
    go_failed: HashMap<(u64, u64), String>,
    /// The kernel refused uprobes for want of a capability: said once, not per program.
    uprobes_denied_told: bool,
}

/// How a process came to be observed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// Running before observer looked at it: threads and goroutines may be blocked already.
    Running,
    /// Just ran a new program (exec), or was born from a watched process.
    New,
}

impl Session {
    /// `observer run`: the command is stopped before exec until [`Launched::release`].
    pub(super) fn start_launched(&mut self, pid: u32, launched: &mut Launched) -> Result<()> {
        self.probes.watch(pid)?;
        let mut t = WatchedProcess::new(pid);
        // The file is opened once and probed through that descriptor: its path could be
        // swapped for another file between our look and the command's exec. If the command
        // then execs something else, the exec event says so and the probes follow.
        let program = launched.program.as_deref().and_then(open_program);
        t.program_id = program.as_ref().map(|(_, id)| *id);
        // Before exec, so that the first goroutines are seen too.
        let go_binary = match (self.opts.no_go, &program) {
            (false, Some((file, _))) => {
                use std::os::fd::AsRawFd;
                let exe = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
                self.attach_go(&mut t, pid, &exe, false)
            }
            _ => None,
        };
        drop(program);
        launched.release()?;
        if let Some(name) = procinfo::comm_of(pid) {
            t.name = name;
        }
        // The command's maps are read on first use: right after exec, the dynamic loader
        // has not mapped its libraries yet.
        t.executable = executable_of(pid);
        if let Some(bin) = go_binary {
            let bias = crate::golang::goroutines::load_bias(pid, &bin).unwrap_or(0);
            self.stacks.set_go_binary(pid, bin, bias);
        }
        self.watched.insert(pid, t);
        Ok(())
    }

    /// `observer watch` / `record --pid`.
    pub(super) fn start_running(&mut self, pid: u32) -> Result<()> {
        self.probes.watch(pid)?;
        self.adopt(pid, Arrival::Running);
        Ok(())
    }

    /// Host mode: takes on every process the filter accepts that is not observed yet.
    pub(super) fn discover(&mut self, first: bool) {
        let Scope::Host(filter) = &self.scope else {
            return;
        };
        let filter = filter.clone();
        let me = std::process::id();
        let mut found = 0usize;
        let pids = procinfo::all_pids(Path::new("/proc"));
        let alive: HashSet<u32> = pids.iter().copied().collect();
        for pid in pids {
            if pid == me
                || self.watched.contains_key(&pid)
                || self.discovery.rejected.contains(&pid)
            {
                continue;
            }
            if !procinfo::is_user_process(pid) || !self.accepts(&filter, pid) {
                self.discovery.rejected.insert(pid);
                continue;
            }
            if let Err(e) = self.probes.watch(pid) {
                log::warn!("pid {pid}: not watched: {e}");
                continue;
            }
            self.adopt(
                pid,
                if first {
                    Arrival::Running
                } else {
                    Arrival::New
                },
            );
            found += 1;
        }
        // Processes that ended without an exit event reaching us (ring buffer full).
        self.discovery.rejected.retain(|p| alive.contains(p));
        let vanished: Vec<u32> = self
            .watched
            .keys()
            .copied()
            .filter(|p| !alive.contains(p))
            .collect();
        for pid in vanished {
            self.drop_target(pid);
        }
        if first && !self.opts.quiet {
            let go = self.watched.values().filter(|t| t.go.is_some()).count();
            crate::say!(
                "observer: sidecar watching {found} processes ({go} Go programs with goroutine probes)"
            );
        }
    }

    fn accepts(&self, filter: &crate::proc::scope::ProcessFilter, pid: u32) -> bool {
        if filter.is_everything() {
            return true;
        }
        let Some(comm) = procinfo::comm_of(pid) else {
            return false;
        };
        filter_accepts(filter, pid, &comm)
    }

    /// Whether an event of process `tgid` is taken. In host mode a process the kernel began to
    /// watch by itself (a child of a watched one) is taken on here, at its first event.
    pub(super) fn accept_event_from(&mut self, tgid: u32) -> bool {
        match &self.scope {
            Scope::Process(pid) => *pid == tgid && !self.target_gone,
            Scope::Host(filter) => {
                if self.watched.contains_key(&tgid) {
                    return true;
                }
                let filter = filter.clone();
                if self.discovery.rejected.contains(&tgid) || !self.accepts(&filter, tgid) {
                    self.probes.unwatch(tgid);
                    return false;
                }
                self.adopt(tgid, Arrival::New);
                true
            }
        }
    }

    /// A process ran a new program: it may now be a Go program or no longer one, and in host
    /// mode it may now match the filter or stop matching.
    pub(super) fn on_exec(&mut self, e: &ExecEvent) {
        let Scope::Host(filter) = &self.scope else {
            self.program_changed(e.tgid);
            return;
        };
        let filter = filter.clone();
        let pid = e.tgid;
        if pid == std::process::id() {
            return;
        }
        if self.watched.contains_key(&pid) {
            self.drop_target(pid);
        }
        self.discovery.rejected.remove(&pid);
        let comm = comm_str(&e.comm);
        if !filter_accepts(&filter, pid, &comm) {
            self.probes.unwatch(pid);
            self.discovery.rejected.insert(pid);
            return;
        }
        if let Err(e) = self.probes.watch(pid) {
            log::warn!("pid {pid}: not watched: {e}");
            return;
        }
        self.adopt(pid, Arrival::New);
    }

    /// `watch` / `run`: the target exec'ed (`env X=1 ./goprog`, `sh -c 'exec ./goprog'`, a
    /// launcher). Uprobes live on a file, so those of the old program see nothing of the new
    /// one: the goroutine probes are taken off and put on the new program if it is Go. The
    /// event may arrive after several execs; what counts is the program running now, and
    /// nothing changes when that is the one already known (`run` of a Go program is probed
    /// on its file before its first exec).
    fn program_changed(&mut self, pid: u32) {
        if self.single_pid() != Some(pid) || self.target_gone {
            return;
        }
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let Some(id) = file_id(&exe) else {
            return; // it ended meanwhile
        };
        let Some(mut t) = self.watched.remove(&pid) else {
            return;
        };
        if t.program_id != Some(id) {
            if t.go.take().is_some() {
                self.probes.unwatch_go(pid);
            }
            t.is_go = false;
            self.probes.set_go_runtime(pid, false);
            t.program_id = Some(id);
            t.go_duty = None;
            t.go_parks_off = false;
            t.go_snapshots = Default::default();
            if let Some(name) = procinfo::comm_of(pid) {
                t.name = name;
            }
            t.identity = crate::proc::container::identity_of(pid);
            if let Some(m) = &self.opts.metrics {
                m.set_container(pid, t.identity.container_id.as_deref());
            }
            t.executable = executable_of(pid);
            t.code_sites.invalidate();
            self.stacks.program_replaced(pid);
            if let Some(w) = &self.wait_stack_worker {
                w.program_replaced(pid);
            }
            if !self.opts.no_go {
                // Its goroutines may have parked between the exec and now: seed them.
                if let Some(bin) = self.attach_go(&mut t, pid, &exe, true) {
                    let bias = crate::golang::goroutines::load_bias(pid, &bin).unwrap_or(0);
                    self.stacks.set_go_binary(pid, bin, bias);
                }
            }
        }
        self.watched.insert(pid, t);
    }

    /// Starts observing `pid` (already watched in the kernel).
    pub(super) fn adopt(&mut self, pid: u32, arrival: Arrival) {
        let mut t = WatchedProcess::new(pid);
        if arrival == Arrival::Running {
            // Their deaths will come without a creation event, as a lost one would: tell
            // the two apart.
            let tids = procinfo::all_pids(Path::new(&format!("/proc/{pid}/task")));
            self.exits.threads_present(pid, tids);
        }
        if self.single_pid().is_some() {
            // Host mode reads maps lazily: most processes never block long.
            self.stacks.prepare(pid);
        }
        t.executable = executable_of(pid);
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        t.program_id = file_id(&exe);
        if !self.opts.no_go {
            if let Some(bin) = self.attach_go(&mut t, pid, &exe, arrival == Arrival::Running) {
                // The process runs the binary: its load bias is known.
                let bias = crate::golang::goroutines::load_bias(pid, &bin).unwrap_or(0);
                self.stacks.set_go_binary(pid, bin, bias);
            }
        }
        if let Some(m) = &self.opts.metrics {
            m.set_container(pid, t.identity.container_id.as_deref());
        }
        self.watched.insert(pid, t);
        let sites = self.refresh_code_sites_of(pid, arrival == Arrival::Running);
        if arrival == Arrival::Running {
            // After the lock-site table, which tells their lock waits from idle ones.
            self.seed_blocked_threads(pid, sites.as_ref());
        }
    }

    /// Goroutine-level observation when `exe` is a Go program. A failure costs the goroutine
    /// view only: thread-level observation goes on, and the user is told.
    pub(super) fn attach_go(
        &mut self,
        t: &mut WatchedProcess,
        pid: u32,
        exe: &Path,
        seed: bool,
    ) -> Option<std::sync::Arc<crate::golang::GoBinary>> {
        let id = file_id(exe);
        if let Some(id) = id {
            if self.discovery.not_go.contains(&id) {
                return None;
            }
            if let Some(reason) = self.discovery.go_failed.get(&id) {
                t.is_go = true;
                log::info!("pid {pid}: no goroutine-level view: {reason}");
                self.probes.set_go_runtime(pid, true);
                return None;
            }
        }
        let binary = self.attach_go_probes(t, pid, exe, seed, id);
        if t.is_go {
            self.probes.set_go_runtime(pid, true);
        }
        binary
    }

    fn attach_go_probes(
        &mut self,
        t: &mut WatchedProcess,
        pid: u32,
        exe: &Path,
        seed: bool,
        id: Option<(u64, u64)>,
    ) -> Option<std::sync::Arc<crate::golang::GoBinary>> {
        match goattach::attach(&mut self.probes, pid, exe, seed) {
            Ok(Some(attached)) => {
                if !self.opts.quiet {
                    let who = if self.is_host() {
                        format!(" to pid {pid} ({})", t.name)
                    } else {
                        String::new()
                    };
                    crate::say!(
                        "observer: goroutine probes attached{who}: {}",
                        attached.summary
                    );
                }
                for w in &attached.warnings {
                    crate::say!("observer: warning: pid {pid}: {w}");
                }
                t.go = Some(attached.watch);
                t.is_go = true;
                match self.opts.go_probe_budget {
                    Some(b) if b <= 0.0 => {
                        self.probes.stop_go_parks(pid);
                        t.go_parks_off = true;
                    }
                    Some(b) => {
                        let parks = self.probes.go_parks(pid).unwrap_or(0);
                        t.go_duty = Some(crate::detect::goduty::DutyCycle::new(
                            b,
                            crate::util::clock::monotonic_ns(),
                            parks,
                        ));
                    }
                    None => {}
                }
                Some(attached.binary)
            }
            Ok(None) => {
                if let Some(id) = id {
                    self.discovery.not_go.insert(id);
                }
                None
            }
            Err(e) => {
                // A Go program all the same, as far as its futex waits go.
                let unreadable = matches!(e, goattach::GoAttachError::Go(_));
                let denied = matches!(
                    e,
                    goattach::GoAttachError::Probe(
                        crate::kernel::probes::ProbeError::UprobesDenied { .. }
                    )
                );
                t.is_go = !unreadable;
                if denied && std::mem::replace(&mut self.discovery.uprobes_denied_told, true) {
                    log::info!("pid {pid}: no goroutine-level view: {e}");
                } else if unreadable && self.is_host() {
                    // Processes that exit at once, or whose binary cannot be read: on a whole
                    // host that is routine, not news.
                    log::info!("pid {pid}: no goroutine-level view: {e}");
                } else {
                    crate::say!("observer: warning: pid {pid}: no goroutine-level view: {e}");
                }
                if let Some(id) = id {
                    self.discovery.go_failed.insert(id, e.to_string());
                }
                None
            }
        }
    }

    /// The host id of thread `tid` as process `pid` names it (a lock owner read from its
    /// memory). The same id outside pid namespaces; 0 when no thread has that id now.
    pub(super) fn host_tid(&mut self, pid: u32, tid: u32) -> u32 {
        let Some(t) = self.watched.get_mut(&pid).filter(|t| t.ns_pid.is_some()) else {
            return tid;
        };
        if let Some(&host) = t.ns_tids.get(&tid) {
            return host;
        }
        t.ns_tids = procinfo::ns_thread_ids(pid);
        t.ns_tids.get(&tid).copied().unwrap_or(0)
    }

    /// The container and pod of watched process `pid` (none if it is not watched).
    pub(super) fn container_of(&self, pid: u32) -> crate::proc::container::ContainerIdentity {
        self.watched
            .get(&pid)
            .map(|t| t.identity.clone())
            .unwrap_or_default()
    }

    /// Stops observing `pid`: it exited, or ran a program the filter does not accept.
    pub(super) fn drop_target(&mut self, pid: u32) {
        if let Some(mut t) = self.watched.remove(&pid) {
            if t.go.is_some() {
                self.probes.unwatch_go(pid);
            }
            let keys = t.code_sites.take_keys();
            self.forget_code_sites(&keys);
        }
        if self.is_host() {
            self.probes.unwatch(pid);
        }
        self.stacks.process_gone(pid);
        self.threads.retain(|_, t| t.tgid != pid);
        self.recent_exits.retain(|(tgid, _, _)| *tgid != pid);
        if let Some(m) = &self.opts.metrics {
            m.process_gone(pid);
        }
        self.live_state.process_gone(pid);
        self.degraded_process_gone(pid);
    }

    /// Threads blocked since before we attached (see `seed`).
    fn seed_blocked_threads(&mut self, pid: u32, sites: Option<&ProcessSites>) {
        let now = monotonic_ns();
        for (tid, state) in seed::blocked_threads(pid) {
            let mut entry = seed::in_flight_for(pid, tid, &state, now);
            if let Some(sites) = sites {
                super::code_sites::classify_blocked(sites, tid, &mut entry);
            }
            if self.probes.seed_in_flight(tid, &entry).is_err() {
                continue; // the kernel saw it block meanwhile: its entry is better
            }
            // It may have woken between the read and the insert: then the entry is stale.
            if seed::blocked_state(pid, tid) != Some(state) {
                self.probes.unseed_in_flight(tid, now);
            }
        }
    }
}

/// Whether process `pid`, named `comm`, passes `filter` (its cgroup and container are read only
/// when the filter looks at them).
fn filter_accepts(filter: &crate::proc::scope::ProcessFilter, pid: u32, comm: &str) -> bool {
    let cgroup = filter
        .needs_cgroup()
        .then(|| procinfo::cgroup_of(pid))
        .flatten();
    let container = filter
        .needs_container()
        .then(|| crate::proc::container::identity_of(pid).container_id)
        .flatten();
    filter.matches(&crate::proc::scope::Candidate {
        comm,
        cgroup: cgroup.as_deref(),
        container_id: container.as_deref(),
    })
}

/// The program `observer run` is about to exec, opened without blocking (a FIFO planted at
/// its path must not hang us) and only if it is a regular file, with its (device, inode).
fn open_program(path: &Path) -> Option<(std::fs::File, (u64, u64))> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let m = file.metadata().ok()?;
    m.is_file().then(|| (file, (m.dev(), m.ino())))
}

/// (device, inode) of a file, following links (`/proc/PID/exe` included).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

/// The executable's path and GNU build id (hex), read while the process lives. Only the
/// headers and the note are read, not the whole file: a sidecar does this for every process.
fn executable_of(pid: u32) -> Option<(PathBuf, Option<String>)> {
    use object::{read::ReadCache, Object as _};
    let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let build_id = crate::proc::binfile::open_regular(&exe, None)
        .ok()
        .and_then(|f| {
            let cache = ReadCache::new(f);
            let file = object::File::parse(&cache).ok()?;
            let id = file.build_id().ok()??;
            Some(id.iter().map(|b| format!("{b:02x}")).collect::<String>())
        });
    Some((path, build_id))
}
