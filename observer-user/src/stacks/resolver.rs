//! Turns what the kernel captured into stacks of frames: `.eh_frame` unwinding of a
//! register + stack copy where one exists, the kernel's frame-pointer stack otherwise. Each
//! frame has its name and its address normalized to (module, file offset), resolved while the
//! process is alive; the `resolve_*` methods without `_frames` return the names only.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use observer_common::{UserStack, STACK_COPY_BYTES};

use crate::{
    golang::GoBinary,
    proc::memory::read_process_memory,
    stacks::frame::{names, Frame},
    stacks::kernel_symbols::{KernelStack, KernelSymbols},
    stacks::symbolize::{frames_of, Symbolizer, NOT_CODE_MARKER},
    stacks::unwind::{Regs, Unwinder},
};

/// The kernel's table of frame-pointer stacks (a stack map), read by id. The session hands in
/// the kernel handle; tests hand in a fake.
pub trait KernelStacks {
    /// The addresses of stack `stack_id`, innermost first; `None` when there is no such stack.
    fn stack(&self, stack_id: i32) -> Option<Vec<u64>>;
    /// The kernel-code addresses of kernel stack `stack_id` (an uninterruptible wait),
    /// innermost first; `None` when there is no such stack.
    fn kernel_stack(&self, _stack_id: i32) -> Option<Vec<u64>> {
        None
    }
}

/// The copied stack bytes of a snapshot (empty when the kernel could not copy any).
pub fn stack_bytes(stack: &UserStack) -> &[u8] {
    let len = (stack.len as usize).min(stack.bytes.len());
    &stack.bytes[..len]
}

/// Whether the file at `path` is the C or C++ runtime (libc, the dynamic loader, libstdc++,
/// libgcc_s): the plumbing between a program's call and the syscall it waits in.
pub fn is_runtime_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [
        "libc.so",
        "libc-",
        "libpthread",
        "libstdc++",
        "ld-linux",
        "libgcc_s",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Machine frames of `frames` in the program's own code (not the C or C++ runtime); a frame
/// with no address counts as the program's.
pub fn own_code_depth(frames: &[Frame]) -> usize {
    crate::stacks::frame::machine_frames(frames)
        .filter(|run| {
            !run.first()
                .and_then(|f| f.addr.as_ref())
                .is_some_and(|a| is_runtime_library(&a.module.path))
        })
        .count()
}

pub struct StackResolver {
    unwinder: Unwinder,
    symbolizer: Symbolizer,
    kernel_symbols: KernelSymbols,
    by_id: HashMap<(u32, i32), Vec<Frame>>,
    /// Kernel stacks by id (the kernel's code does not change; bounded like the id table).
    kernel_by_id: HashMap<i32, KernelStack>,
    /// Go executables (and their load bias) whose `.gopclntab` names what the symbol tables
    /// do not: stripped Go binaries keep it.
    go: HashMap<u32, (Arc<GoBinary>, u64)>,
    /// Processes that exited, oldest first: their maps stay for the events still on their
    /// way (a long wait ending with the process, a thread death read late), then go. Kept
    /// for good, they made a sidecar's memory grow with every process the host ever ran.
    gone: VecDeque<(u32, Instant)>,
}

/// How long the maps of an exited process are kept for its late events.
const GONE_RETENTION: Duration = Duration::from_secs(10);
/// At most this many exited processes' maps are kept, however fast processes end.
const GONE_MAX: usize = 256;

impl Default for StackResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl StackResolver {
    pub fn new() -> Self {
        Self {
            unwinder: Unwinder::new(),
            symbolizer: Symbolizer::new(),
            kernel_symbols: KernelSymbols::new(),
            by_id: HashMap::new(),
            kernel_by_id: HashMap::new(),
            go: HashMap::new(),
            gone: VecDeque::new(),
        }
    }

    /// Names frames of `pid` that the symbol tables cannot from this Go binary's pclntab.
    pub fn set_go_binary(&mut self, pid: u32, binary: Arc<GoBinary>, load_bias: u64) {
        self.go.insert(pid, (binary, load_bias));
    }

    /// Addresses to frames, innermost first (addrs[0] is an exact pc, the rest return
    /// addresses), each with its normalized address.
    fn symbolize(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        let Some((bin, bias)) = self.go.get(&pid) else {
            return self.symbolizer.symbolize_frames(pid, addrs);
        };
        let groups = self.symbolizer.symbolize_addrs(pid, addrs);
        let mut out = Vec::with_capacity(addrs.len());
        for (i, (group, &addr)) in groups.iter().zip(addrs).enumerate() {
            let unnamed = group
                .names
                .iter()
                .all(|f| f.contains("+0x") || f.starts_with("[unknown]"));
            let go_frames = if unnamed {
                // frames_at looks up pc - 1 itself, like Go's traceback; give it the pc after
                // the call for return addresses and the exact pc + 1 for the innermost one.
                let link_pc = addr.wrapping_sub(*bias).wrapping_add(u64::from(i == 0));
                bin.frames_at(link_pc)
            } else {
                Vec::new()
            };
            if go_frames.is_empty() {
                out.extend(frames_of(&group.names, group.addr.as_ref()));
            } else {
                // The pclntab names the code at the same normalized address.
                let names: Vec<String> = go_frames
                    .into_iter()
                    .map(|f| {
                        let file = f.file.rsplit('/').next().unwrap_or(&f.file).to_string();
                        if file.is_empty() {
                            f.function
                        } else {
                            format!("{} ({file}:{})", f.function, f.line)
                        }
                    })
                    .collect();
                out.extend(frames_of(&names, group.addr.as_ref()));
            }
        }
        out
    }

    /// Reads the process's maps now, so its stacks can be named even after it exits.
    pub fn prepare(&mut self, pid: u32) {
        self.unwinder.prepare(pid);
        if let Some(maps) = self.unwinder.maps(pid) {
            self.symbolizer.insert_maps(maps);
        }
    }

    /// A kernel snapshot: unwind the copy when there is one, else fall back to the
    /// frame-pointer stack id.
    pub fn resolve_snapshot_frames(
        &mut self,
        kernel: &dyn KernelStacks,
        pid: u32,
        snap: &UserStack,
        fallback_id: i32,
    ) -> Vec<Frame> {
        let bytes = stack_bytes(snap);
        if snap.sp != 0 && !bytes.is_empty() {
            let regs = Regs {
                ip: snap.ip,
                sp: snap.sp,
                bp: snap.bp,
            };
            return self.resolve_registers(pid, regs, bytes);
        }
        self.resolve_id_frames(kernel, pid, fallback_id)
    }

    /// A thread that is blocked right now: copy its stack from userspace (read-only).
    pub fn resolve_blocked_frames(&mut self, pid: u32, regs: Regs) -> Vec<Frame> {
        match self.unwind_blocked(pid, regs) {
            Some(addrs) => self.symbolize(pid, &addrs),
            None => self.symbolize(pid, &[regs.ip]),
        }
    }

    /// The unwound addresses (innermost first: the pc, then return addresses) of a thread
    /// blocked right now, its stack read from the process; `None` when it cannot be read.
    pub fn unwind_blocked(&mut self, pid: u32, regs: Regs) -> Option<Vec<u64>> {
        let mut len = STACK_COPY_BYTES;
        while len >= 512 {
            if let Ok(bytes) = read_process_memory(pid, regs.sp, len) {
                if !bytes.is_empty() {
                    return Some(self.unwinder.unwind(pid, regs, &bytes));
                }
            }
            len /= 2;
        }
        None
    }

    /// The first `max_frames` code addresses (innermost first: the pc, then return addresses)
    /// of a thread blocked right now, unwound from a copy of the top of its stack: where it
    /// waits, cheaply (a few KiB read, no names). Just the pc when the stack is unreadable.
    pub fn blocked_addrs(&mut self, pid: u32, regs: Regs, max_frames: usize) -> Vec<u64> {
        let mut len = STACK_COPY_BYTES / 2;
        while len >= 512 {
            if let Ok(bytes) = read_process_memory(pid, regs.sp, len) {
                if !bytes.is_empty() {
                    let mut addrs = self.unwinder.unwind(pid, regs, &bytes);
                    addrs.truncate(max_frames);
                    return addrs;
                }
            }
            len /= 2;
        }
        vec![regs.ip]
    }

    /// Where a blocked thread waits, robustly: its first code addresses through the C and C++
    /// runtime (the syscall wrapper, the condition variable or sleep) up to and including the
    /// first return address into other code (the program's call of the wait), at most
    /// `max_frames`. The runtime's unwind rules need no frame pointer, so a thread whose frame
    /// pointer register is unknown (seeded at attach) gives the same site as when it is known.
    pub fn blocked_site(&mut self, pid: u32, regs: Regs, max_frames: usize) -> Vec<u64> {
        let addrs = self.blocked_addrs(pid, regs, max_frames);
        let Some(maps) = self.unwinder.maps(pid) else {
            return addrs;
        };
        let mut site = Vec::with_capacity(addrs.len());
        for (i, &addr) in addrs.iter().enumerate() {
            site.push(addr);
            // A return address points after its call: look up the call itself.
            let at = if i == 0 { addr } else { addr.saturating_sub(1) };
            let runtime = maps
                .find(at)
                .and_then(|m| m.display_name())
                .is_some_and(is_runtime_library);
            if !runtime {
                break;
            }
        }
        site
    }

    /// A stack the kernel stored in its stack map (frame pointers).
    pub fn resolve_id_frames(
        &mut self,
        kernel: &dyn KernelStacks,
        pid: u32,
        stack_id: i32,
    ) -> Vec<Frame> {
        if let Some(frames) = self.by_id.get(&(pid, stack_id)) {
            return frames.clone();
        }
        let Some(addrs) = kernel.stack(stack_id) else {
            return Vec::new();
        };
        // The kernel's frame-pointer walk: cut where it left the real stack, and say so.
        let keep = self.unwinder.call_prefix_len(pid, &addrs);
        let mut frames = self.symbolize(pid, &addrs[..keep]);
        if keep < addrs.len() && frames.last().is_none_or(|f| &*f.name != NOT_CODE_MARKER) {
            frames.push(Frame::named(NOT_CODE_MARKER));
        }
        self.by_id.insert((pid, stack_id), frames.clone());
        frames
    }

    /// The kernel stack of an uninterruptible wait, named; empty when there is none.
    pub fn resolve_kernel(&mut self, kernel: &dyn KernelStacks, kstack_id: i32) -> KernelStack {
        if kstack_id < 0 {
            return KernelStack::default();
        }
        if let Some(stack) = self.kernel_by_id.get(&kstack_id) {
            return stack.clone();
        }
        let Some(addrs) = kernel.kernel_stack(kstack_id) else {
            return KernelStack::default();
        };
        let stack = self.kernel_symbols.stack(&addrs);
        // The kernel's stack map has this many slots; ids never exceed it.
        if self.kernel_by_id.len() >= 4096 {
            self.kernel_by_id.clear();
        }
        self.kernel_by_id.insert(kstack_id, stack.clone());
        stack
    }

    /// A stack of addresses read from the process (innermost first: a pc, then return
    /// addresses).
    pub fn resolve_addrs_frames(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        self.symbolize(pid, addrs)
    }

    /// One code address (e.g. a goroutine's creation site), with inlined callers.
    pub fn resolve_pc_frames(&mut self, pid: u32, pc: u64) -> Vec<Frame> {
        self.symbolize(pid, &[pc])
    }

    /// [`Self::resolve_snapshot_frames`], names only.
    pub fn resolve_snapshot(
        &mut self,
        kernel: &dyn KernelStacks,
        pid: u32,
        snap: &UserStack,
        fallback_id: i32,
    ) -> Vec<String> {
        names(&self.resolve_snapshot_frames(kernel, pid, snap, fallback_id))
    }

    /// [`Self::resolve_blocked_frames`], names only.
    pub fn resolve_blocked(&mut self, pid: u32, regs: Regs) -> Vec<String> {
        names(&self.resolve_blocked_frames(pid, regs))
    }

    /// [`Self::resolve_id_frames`], names only.
    pub fn resolve_id(
        &mut self,
        kernel: &dyn KernelStacks,
        pid: u32,
        stack_id: i32,
    ) -> Vec<String> {
        names(&self.resolve_id_frames(kernel, pid, stack_id))
    }

    /// [`Self::resolve_addrs_frames`], names only.
    pub fn resolve_addrs(&mut self, pid: u32, addrs: &[u64]) -> Vec<String> {
        names(&self.symbolize(pid, addrs))
    }

    /// [`Self::resolve_pc_frames`], names only.
    pub fn resolve_pc(&mut self, pid: u32, pc: u64) -> Vec<String> {
        names(&self.symbolize(pid, &[pc]))
    }

    fn resolve_registers(&mut self, pid: u32, regs: Regs, bytes: &[u8]) -> Vec<Frame> {
        let addrs = self.unwinder.unwind(pid, regs, bytes);
        self.symbolize(pid, &addrs)
    }

    /// The process ran a new program: its old maps and Go binary no longer describe it.
    pub fn program_replaced(&mut self, pid: u32) {
        self.process_gone(pid);
        self.go.remove(&pid);
    }

    /// The process exited: keep only what symbolization needs.
    pub fn process_gone(&mut self, pid: u32) {
        if let Some(maps) = self.unwinder.forget(pid) {
            self.symbolizer.insert_maps(maps);
        }
        self.by_id.retain(|(p, _), _| *p != pid);
        self.gone.push_back((pid, Instant::now()));
        self.expire_gone(Instant::now());
    }

    /// Forgets the exited processes kept longer than [`GONE_RETENTION`] or beyond
    /// [`GONE_MAX`]. A pid reused since by a process we watch keeps its (new) maps.
    fn expire_gone(&mut self, now: Instant) {
        while let Some(&(pid, since)) = self.gone.front() {
            if self.gone.len() <= GONE_MAX && now.duration_since(since) < GONE_RETENTION {
                break;
            }
            self.gone.pop_front();
            let reused = self.unwinder.maps(pid).is_some() || self.gone.iter().any(|g| g.0 == pid);
            if !reused {
                self.symbolizer.forget(pid);
                self.go.remove(&pid);
            }
        }
    }

    /// Exited processes whose maps are still kept (for tests and memory checks).
    pub fn gone_kept(&self) -> usize {
        self.gone.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack table with the stacks a test puts in, counting its reads.
    #[derive(Default)]
    struct FakeStacks {
        table: HashMap<i32, Vec<u64>>,
        reads: std::cell::Cell<usize>,
    }

    impl KernelStacks for FakeStacks {
        fn stack(&self, stack_id: i32) -> Option<Vec<u64>> {
            self.reads.set(self.reads.get() + 1);
            self.table.get(&stack_id).cloned()
        }
    }

    /// No such process: addresses stay unnamed, one frame each.
    const PID: u32 = u32::MAX;

    #[test]
    fn the_runtime_is_libc_the_loader_and_libstdcxx() {
        for lib in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libpthread.so.0",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
            "/lib64/ld-linux-x86-64.so.2",
        ] {
            assert!(is_runtime_library(lib), "{lib}");
        }
        for own in [
            "/usr/sbin/mariadbd",
            "/usr/lib/libcrypto.so.3",
            "/tmp/libcx/app",
        ] {
            assert!(!is_runtime_library(own), "{own}");
        }
    }

    #[test]
    fn own_code_depth_counts_machine_frames_outside_the_runtime() {
        use crate::proc::normaddr::Module;
        let module = |path: &str| {
            Arc::new(Module {
                path: path.into(),
                build_id: None,
            })
        };
        let (libc, app) = (module("/usr/lib/libc.so.6"), module("/srv/app"));
        let frames = vec![
            Frame::at("__futex_abstimed_wait_common", &libc, 0x10, false),
            Frame::at("pthread_cond_wait", &libc, 0x20, false),
            // Two functions at one address (one inlined): one machine frame.
            Frame::at("next_job_inner", &app, 0x30, true),
            Frame::at("next_job", &app, 0x30, false),
            Frame::at("worker_main", &app, 0x40, false),
            Frame::at("start_thread", &libc, 0x50, false),
        ];
        assert_eq!(own_code_depth(&frames), 2);
        assert_eq!(own_code_depth(&frames[..2]), 0);
    }

    #[test]
    fn stack_ids_are_read_from_the_kernel_once_per_process() {
        let mut kernel = FakeStacks::default();
        kernel.table.insert(5, vec![0x1000, 0x2000, 0x3000]);
        let mut r = StackResolver::new();
        assert_eq!(r.resolve_id_frames(&kernel, PID, 5).len(), 3);
        assert_eq!(r.resolve_id(&kernel, PID, 5).len(), 3);
        assert_eq!(kernel.reads.get(), 1, "the second lookup is cached");
        // An id the kernel does not have (dropped, or -EFAULT): no frames.
        assert!(r.resolve_id_frames(&kernel, PID, 6).is_empty());
        // The process exited: its cached stacks go with it.
        r.process_gone(PID);
        assert_eq!(r.resolve_id_frames(&kernel, PID, 5).len(), 3);
        assert_eq!(kernel.reads.get(), 3);
    }

    #[test]
    fn a_snapshot_without_a_stack_copy_falls_back_to_the_stack_id() {
        let mut kernel = FakeStacks::default();
        kernel.table.insert(1, vec![0x1000, 0x2000]);
        let mut r = StackResolver::new();
        let mut snap = UserStack {
            ip: 0x1000,
            sp: 0,
            bp: 0,
            len: 0,
            bytes: [0; STACK_COPY_BYTES],
        };
        assert_eq!(r.resolve_snapshot_frames(&kernel, PID, &snap, 1).len(), 2);
        assert_eq!(kernel.reads.get(), 1);
        // With a copy, the copy is unwound and the table is not read.
        snap.sp = 0x7fff_0000;
        snap.len = 64;
        assert!(!r.resolve_snapshot(&kernel, PID, &snap, 1).is_empty());
        assert_eq!(kernel.reads.get(), 1);
    }

    #[test]
    fn stack_copy_length_is_cut_to_the_buffer() {
        let mut snap = UserStack {
            ip: 0,
            sp: 0,
            bp: 0,
            len: u64::MAX,
            bytes: [0; STACK_COPY_BYTES],
        };
        assert_eq!(stack_bytes(&snap).len(), STACK_COPY_BYTES);
        snap.len = 8;
        assert_eq!(stack_bytes(&snap).len(), 8);
    }

    /// However many processes come and go, the exited ones kept are bounded.
    #[test]
    fn exited_processes_are_kept_bounded() {
        let mut r = StackResolver::new();
        for pid in 1_000_000..1_010_000 {
            r.process_gone(pid);
        }
        assert_eq!(r.gone_kept(), GONE_MAX);
        // And they expire with time even when nothing else exits.
        r.expire_gone(Instant::now() + GONE_RETENTION + Duration::from_secs(1));
        assert_eq!(r.gone_kept(), 0);
    }
}
