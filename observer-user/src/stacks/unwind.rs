//! User-space stack unwinding from outside the target: registers + a copy of the top of the
//! stack, unwound with the `.eh_frame` CFI of the mapped ELF files (framehop).
//!
//! Frame pointers alone lose the application's frames as soon as the stack passes through
//! code built without them (Debian's glibc), hence CFI. Where a module has no CFI for a pc,
//! framehop falls back to a frame-pointer step.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _};
use object::{Object, ObjectSection, ObjectSegment, ReadCache, ReadRef};

use crate::proc::objectfile::FileId;
use crate::proc::procmaps::{Mapping, ProcessMaps};

/// Longest stack returned; deeper ones are truncated (outermost frames dropped).
pub const MAX_FRAMES: usize = 128;

/// Maps are re-read at most this often per process when an address falls outside every
/// known code mapping, so a process running JIT or corrupt stacks cannot make us re-read
/// `/proc/PID/maps` on every unwind.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(10);

/// User registers of the thread at the point the stack copy was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    pub ip: u64,
    pub sp: u64,
    /// Frame pointer; 0 when unknown (CFI unwinding does not need it).
    pub bp: u64,
}

type Data = Arc<[u8]>;

/// What framehop needs from one ELF file, independent of where it is loaded. Shared by every
/// process mapping the same file (libc is in all of them).
#[derive(Debug)]
struct ElfUnwindInfo {
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    eh_frame: Option<(Range<u64>, Data)>,
    eh_frame_hdr: Option<(Range<u64>, Data)>,
    /// PT_LOAD segments: (p_vaddr, p_offset, p_filesz).
    segments: Vec<(u64, u64, u64)>,
}

impl ElfUnwindInfo {
    fn parse<'d, R: ReadRef<'d>>(data: R) -> Option<ElfUnwindInfo> {
        let obj = object::File::parse(data).ok()?;
        let range = |name: &str| {
            obj.section_by_name(name)
                .map(|s| s.address()..s.address().saturating_add(s.size()))
        };
        let with_data = |name: &str| {
            let s = obj.section_by_name(name)?;
            // The size is the file's word: a sparse file can claim gigabytes of unwind tables.
            if s.size() > crate::proc::inflate::MAX_DECOMPRESSED_PER_FILE {
                log::warn!(
                    "{name} of {} bytes is over the per-file budget: not used",
                    s.size()
                );
                return None;
            }
            let bytes = s.data().ok()?;
            Some((
                s.address()..s.address().saturating_add(s.size()),
                Arc::from(bytes),
            ))
        };
        Some(ElfUnwindInfo {
            text: range(".text"),
            got: range(".got"),
            eh_frame: with_data(".eh_frame"),
            eh_frame_hdr: with_data(".eh_frame_hdr"),
            segments: obj
                .segments()
                .map(|s| {
                    let (off, size) = s.file_range();
                    (s.address(), off, size)
                })
                .collect(),
        })
    }

    /// The load bias of the file given one of its mappings: what to add to an address stated
    /// in the file (SVMA) to get the address in the process (AVMA).
    fn bias_for(&self, m: &Mapping) -> Option<u64> {
        let page = 4096;
        // lld (Rust's default linker) pads virtual addresses, not file offsets: the read-only
        // segment before the code covers the code mapping's page-aligned offset too, and
        // taking it would shift every address by a page. The segment starting last is the one
        // mapped there.
        let (vaddr, off, _) = self
            .segments
            .iter()
            .filter(|(_, off, size)| {
                off - off % page <= m.offset && m.offset < off.saturating_add(*size.max(&1))
            })
            .max_by_key(|(_, off, _)| *off)?;
        Some(
            m.start
                .wrapping_sub(m.offset)
                .wrapping_sub(vaddr.wrapping_sub(*off)),
        )
    }

    fn module(&self, name: String, m: &Mapping) -> Option<Module<Data>> {
        let bias = self.bias_for(m)?;
        // framehop addresses code relative to the base as u32.
        if m.end.wrapping_sub(bias) > u64::from(u32::MAX) || m.start < bias {
            return None;
        }
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, d)| Arc::clone(d)),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, d)| Arc::clone(d)),
            ..Default::default()
        };
        Some(Module::new(name, m.start..m.end, bias, info))
    }
}

struct ProcessState {
    maps: Arc<ProcessMaps>,
    unwinder: UnwinderX86_64<Data>,
    /// Executable mappings, sorted: a return address outside all of them is not real.
    code: Vec<Range<u64>>,
    loaded_at: Instant,
}

impl ProcessState {
    fn is_code(&self, addr: u64) -> bool {
        let idx = self.code.partition_point(|r| r.start <= addr);
        idx > 0 && self.code[idx - 1].contains(&addr)
    }

    /// Finds the frame pointer of a function built with frame pointers whose frame pointer
    /// value we never had (its callees did not save rbp, so CFI cannot restore it). Scans up
    /// from `sp` for the first slot followed by a return address: in code, right after a call
    /// instruction. That slot is where the prologue's `push rbp` stored the caller's rbp.
    fn guess_frame_pointer(
        &self,
        pid: u32,
        sp: u64,
        read_stack: &mut impl FnMut(u64) -> Result<u64, ()>,
    ) -> Option<u64> {
        const SCAN_SLOTS: u64 = 512;
        (0..SCAN_SLOTS)
            .map(|i| sp.saturating_add(i * 8))
            .map_while(|slot| Some((slot, read_stack(slot.checked_add(8)?).ok()?)))
            .find(|&(_, ra)| self.is_code(ra) && self.follows_call(pid, ra))
            .map(|(slot, _)| slot)
    }

    /// Whether the instruction just before `ra` is a call.
    fn follows_call(&self, pid: u32, ra: u64) -> bool {
        let mut bytes = [0u8; 8];
        let Some(start) = ra.checked_sub(8) else {
            return false;
        };
        let Some(m) = self.maps.find(start).filter(|m| m.contains(ra - 1)) else {
            return false;
        };
        let from_file = m
            .object
            .as_ref()
            .and_then(|o| o.file())
            .is_some_and(|f| f.read_exact_at(&mut bytes, m.file_offset(start)).is_ok());
        if !from_file {
            match crate::proc::memory::read_process_memory(pid, start, 8) {
                Ok(b) if b.len() == 8 => bytes.copy_from_slice(&b),
                _ => return false,
            }
        }
        ends_with_call(&bytes)
    }
}

/// Unwinds stacks of target processes, caching per-process module lists and per-file unwind
/// sections.
pub struct Unwinder {
    processes: HashMap<u32, ProcessState>,
    files: HashMap<FileId, Option<Arc<ElfUnwindInfo>>>,
    cache: CacheX86_64,
}

impl Default for Unwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl Unwinder {
    pub fn new() -> Self {
        Unwinder {
            processes: HashMap::new(),
            files: HashMap::new(),
            cache: CacheX86_64::new(),
        }
    }

    /// Unwinds one thread: `stack` holds the bytes at `regs.sp`. Returns frame addresses
    /// innermost first: `[ip, return_address_1, ...]`, at most [`MAX_FRAMES`]. Reads outside
    /// `stack` end the unwind; an unreadable process yields just `[ip]`.
    pub fn unwind(&mut self, pid: u32, regs: Regs, stack: &[u8]) -> Vec<u64> {
        if !self.processes.contains_key(&pid) && !self.load(pid) {
            return vec![regs.ip];
        }
        let mut refreshed = false;
        loop {
            let (frames, stopped_outside_code) = self.unwind_once(pid, regs, stack);
            if stopped_outside_code && !refreshed && self.refresh(pid) {
                // A library dlopen'ed since the maps were read; try again with it known.
                refreshed = true;
                continue;
            }
            return frames;
        }
    }

    /// Reads the maps of `pid` and its unwind sections now, unless already done, so that its
    /// stacks stay unwindable and symbolizable after it exits. False if `pid` is unreadable.
    pub fn prepare(&mut self, pid: u32) -> bool {
        self.processes.contains_key(&pid) || self.load(pid)
    }

    /// How many of `addrs`, a frame-pointer walk (a pc, then return addresses), are a real
    /// stack: up to the first "return address" that is not code or follows no call. A bad
    /// frame pointer into a structure reads a code address stored there (a callback, a vtable
    /// entry): code, but not a return address, and all above it came through the same bad
    /// pointer. The pc is always kept; all are when the process cannot be read.
    pub fn call_prefix_len(&mut self, pid: u32, addrs: &[u64]) -> usize {
        if !self.prepare(pid) {
            return addrs.len();
        }
        let mut refreshed = false;
        loop {
            let Some(state) = self.processes.get(&pid) else {
                return addrs.len();
            };
            let first_bad = addrs
                .iter()
                .enumerate()
                .skip(1)
                .find(|&(_, &ra)| !state.is_code(ra) || !state.follows_call(pid, ra));
            match first_bad {
                None => return addrs.len(),
                // A library loaded since the maps were read: look again with it known.
                Some((_, &ra)) if !state.is_code(ra) && !refreshed && self.refresh(pid) => {
                    refreshed = true;
                }
                Some((i, _)) => return i,
            }
        }
    }

    /// The maps used for `pid`, e.g. to symbolize its stacks after it has exited.
    pub fn maps(&self, pid: u32) -> Option<Arc<ProcessMaps>> {
        self.processes.get(&pid).map(|s| Arc::clone(&s.maps))
    }

    /// Drops what is cached for the processes `keep` says no to.
    pub fn retain_processes(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.processes.retain(|&pid, _| keep(pid));
    }

    /// Drops everything cached for `pid` (it exited). Returns its maps, whose open files keep
    /// its stacks symbolizable.
    pub fn forget(&mut self, pid: u32) -> Option<Arc<ProcessMaps>> {
        self.processes.remove(&pid).map(|s| s.maps)
    }

    /// Returns the frames and whether the unwind stopped at an address outside known code.
    fn unwind_once(&mut self, pid: u32, regs: Regs, stack: &[u8]) -> (Vec<u64>, bool) {
        let Some(state) = self.processes.get(&pid) else {
            return (vec![regs.ip], false);
        };
        let cache = &mut self.cache;
        let mut frames = Vec::with_capacity(32);
        frames.push(regs.ip);
        if !state.is_code(regs.ip) {
            return (frames, true);
        }
        let mut read_stack = |addr: u64| read_u64(stack, regs.sp, addr);
        let mut uregs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut address = FrameAddress::from_instruction_pointer(regs.ip);
        // Registers read from /proc/PID/task/TID/syscall carry no frame pointer (bp = 0).
        let mut may_guess_bp = regs.bp == 0;
        while frames.len() < MAX_FRAMES {
            let before = uregs;
            let step = state
                .unwinder
                .unwind_frame(address, &mut uregs, cache, &mut read_stack);
            let return_address = match step {
                Ok(Some(ra)) => ra,
                // framehop ends a frame-pointer step on bp == 0 as if it were the stack's end.
                Ok(None) if may_guess_bp && before.bp() == 0 => {
                    may_guess_bp = false;
                    let mut probe = before;
                    probe.set_bp(1);
                    let needs_bp = state
                        .unwinder
                        .unwind_frame(address, &mut probe, cache, &mut read_stack)
                        .is_err();
                    match needs_bp
                        .then(|| state.guess_frame_pointer(pid, before.sp(), &mut read_stack))
                        .flatten()
                    {
                        Some(bp) => {
                            uregs = before;
                            uregs.set_bp(bp);
                            continue;
                        }
                        None => break,
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    log::trace!(
                        "pid {pid}: unwind stopped after {} frames: {err}",
                        frames.len()
                    );
                    break;
                }
            };
            // A return address must point into executable memory; anything else is garbage
            // or a library loaded after the maps were read.
            if !state.is_code(return_address) {
                return (frames, true);
            }
            frames.push(return_address);
            match FrameAddress::from_return_address(return_address) {
                Some(a) => address = a,
                None => break,
            }
        }
        (frames, false)
    }

    fn refresh(&mut self, pid: u32) -> bool {
        let fresh_enough = self
            .processes
            .get(&pid)
            .is_some_and(|s| s.loaded_at.elapsed() < MIN_REFRESH_INTERVAL);
        !fresh_enough && self.load(pid)
    }

    fn load(&mut self, pid: u32) -> bool {
        let maps = match ProcessMaps::load(pid) {
            Ok(maps) => Arc::new(maps),
            Err(err) => {
                log::debug!("{err}");
                return false;
            }
        };
        self.insert_maps(maps);
        true
    }

    /// Uses `maps` for its process instead of reading `/proc/PID/maps`.
    pub fn insert_maps(&mut self, maps: Arc<ProcessMaps>) {
        let mut unwinder = UnwinderX86_64::new();
        let mut code = Vec::new();
        for m in maps.mappings().iter().filter(|m| m.perms.exec) {
            code.push(m.start..m.end);
            if let Some(module) = self.module_for(&maps, m) {
                unwinder.add_module(module);
            }
        }
        self.processes.insert(
            maps.pid(),
            ProcessState {
                maps,
                unwinder,
                code,
                loaded_at: Instant::now(),
            },
        );
    }

    fn module_for(&mut self, maps: &ProcessMaps, m: &Mapping) -> Option<Module<Data>> {
        if m.is_vdso() {
            let image = maps.vdso_image()?;
            let info = ElfUnwindInfo::parse(&*image)?;
            return info.module("[vdso]".to_string(), m);
        }
        let object = m.object.as_ref()?;
        let id = object.file_id()?;
        let info = match self.files.get(&id) {
            Some(info) => info.clone(),
            None => {
                let info = object
                    .reader()
                    .and_then(|r| ElfUnwindInfo::parse(&ReadCache::new(r)))
                    .map(Arc::new);
                self.files.insert(id, info.clone());
                info
            }
        }?;
        info.module(object.path().to_string_lossy().into_owned(), m)
    }
}

/// Whether `code` (the 8 bytes before a return address) ends with an x86-64 `call`.
fn ends_with_call(code: &[u8; 8]) -> bool {
    let at = |back: usize| code[8 - back];
    // ModRM reg field 2 = call (FF /2); `rm` 100 needs a SIB byte, `rm` 101 with mod 00 is
    // rip-relative with a 32-bit displacement.
    let ff2 = |back: usize, modrm_mask: u8, modrm: u8| {
        at(back) == 0xff && at(back - 1) & modrm_mask == modrm
    };
    at(5) == 0xe8                         // call rel32
        || ff2(2, 0xf8, 0xd0)             // call *%reg
        || (ff2(2, 0xf8, 0x10) && at(1) & 7 != 4 && at(1) & 7 != 5) // call *(%reg)
        || ff2(3, 0xff, 0x14)             // call *(base,index)
        || ff2(6, 0xff, 0x15)             // call *disp32(%rip)
        || (ff2(3, 0xf8, 0x50) && at(2) & 7 != 4) // call *disp8(%reg)
        || ff2(4, 0xff, 0x54)             // call *disp8(base,index)
        || (ff2(6, 0xf8, 0x90) && at(5) & 7 != 4) // call *disp32(%reg)
        || ff2(7, 0xff, 0x94) // call *disp32(base,index)
}

/// Reads a little-endian u64 at `addr` from the stack copy that starts at `sp`.
fn read_u64(stack: &[u8], sp: u64, addr: u64) -> Result<u64, ()> {
    let off = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
    let bytes = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
    Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_calls_before_return_addresses() {
        let ends = |tail: &[u8]| {
            let mut code = [0x90u8; 8];
            code[8 - tail.len()..].copy_from_slice(tail);
            ends_with_call(&code)
        };
        assert!(ends(&[0xe8, 1, 2, 3, 4]), "call rel32");
        assert!(ends(&[0xff, 0xd0]), "call *%rax");
        assert!(ends(&[0x41, 0xff, 0xd4]), "call *%r12");
        assert!(ends(&[0xff, 0x13]), "call *(%rbx)");
        assert!(ends(&[0xff, 0x15, 1, 2, 3, 4]), "call *disp32(%rip)");
        assert!(ends(&[0xff, 0x50, 0x08]), "call *0x8(%rax)");
        assert!(ends(&[0xff, 0x54, 0x24, 0x08]), "call *0x8(%rsp)");
        assert!(ends(&[0xff, 0x90, 1, 2, 3, 4]), "call *disp32(%rax)");
        assert!(ends(&[0xff, 0x14, 0xc5]), "call *(,%rax,8)");
        assert!(!ends(&[0x90, 0x90]), "nops");
        assert!(!ends(&[0xff, 0xe0]), "jmp *%rax");
        assert!(!ends(&[0xff, 0x20]), "jmp *(%rax)");
        assert!(!ends(&[0xc3]), "ret");
    }

    /// Our own code: right after a call is a return address; elsewhere, or data, is not.
    #[test]
    fn frame_pointer_walks_stop_at_the_first_address_that_is_not_a_return_address() {
        let pid = std::process::id();
        let f = frame_pointer_walks_stop_at_the_first_address_that_is_not_a_return_address
            as *const () as u64;
        let code = crate::proc::memory::read_process_memory(pid, f, 256).expect("own code");
        let window = |ra: u64| -> [u8; 8] {
            let at = (ra - 8 - f) as usize;
            code[at..at + 8].try_into().unwrap()
        };
        // A return address: the end of a `call rel32` in this function.
        let after_call = (8..code.len() as u64)
            .map(|i| f + i)
            .find(|&ra| ends_with_call(&window(ra)) && code[(ra - f - 5) as usize] == 0xe8)
            .expect("a call in this function");
        let not_after_call = (8..code.len() as u64)
            .map(|i| f + i)
            .find(|&ra| !ends_with_call(&window(ra)))
            .expect("an address not after a call");
        let data = &code as *const _ as u64;
        let (mut u, pc) = (Unwinder::new(), f);
        assert_eq!(u.call_prefix_len(pid, &[pc, after_call, after_call]), 3);
        assert_eq!(
            u.call_prefix_len(pid, &[pc, after_call, not_after_call, after_call]),
            2
        );
        assert_eq!(u.call_prefix_len(pid, &[pc, data, after_call]), 1);
        assert_eq!(u.call_prefix_len(pid, &[pc, 0x4a]), 1);
        // The pc is kept whatever it is.
        assert_eq!(u.call_prefix_len(pid, &[0x4a]), 1);
        // A process that cannot be read: nothing to judge by, nothing cut.
        assert_eq!(u.call_prefix_len(u32::MAX, &[pc, 0x4a, 0x4b]), 3);
    }

    #[test]
    fn reads_only_inside_the_copy() {
        let mut stack = vec![0u8; 24];
        stack[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(read_u64(&stack, 0x1000, 0x1008), Ok(0x1122_3344_5566_7788));
        assert_eq!(read_u64(&stack, 0x1000, 0x1010), Ok(0));
        assert_eq!(read_u64(&stack, 0x1000, 0x1011), Err(()));
        assert_eq!(read_u64(&stack, 0x1000, 0x0ff8), Err(()));
        assert_eq!(read_u64(&stack, 0x1000, u64::MAX), Err(()));
        assert_eq!(read_u64(&[], 0, 0), Err(()));
    }

    #[test]
    fn bias_from_segment_and_mapping() {
        let info = ElfUnwindInfo {
            text: None,
            got: None,
            eh_frame: None,
            eh_frame_hdr: None,
            // libc-like: text segment at vaddr 0x26000, file offset 0x26000.
            segments: vec![(0, 0, 0x26000), (0x26000, 0x26000, 0x155000)],
        };
        let text = crate::proc::procmaps::parse_line(
            "7f3a1e24e000-7f3a1e3a3000 r-xp 00026000 fd:01 1312 /usr/lib/libc.so.6",
        )
        .expect("line");
        assert_eq!(info.bias_for(&text), Some(0x7f3a1e228000));

        // Non-PIE: vaddr 0x401000 at offset 0x1000 -> no bias.
        let info = ElfUnwindInfo {
            segments: vec![(0x400000, 0, 0x500), (0x401000, 0x1000, 0x800)],
            ..info
        };
        let exe =
            crate::proc::procmaps::parse_line("401000-402000 r-xp 00001000 fd:01 7 /usr/bin/x")
                .expect("line");
        assert_eq!(info.bias_for(&exe), Some(0));

        // lld: R segment [0, 0x1ae58) and the text segment at file offset 0x1ae60, vaddr
        // 0x1be60; the code mapping's offset 0x1a000 lies in both.
        let info = ElfUnwindInfo {
            segments: vec![(0, 0, 0x1ae58), (0x1be60, 0x1ae60, 0x52d80)],
            ..info
        };
        let text = crate::proc::procmaps::parse_line(
            "55e7e9fa5000-55e7e9ff9000 r-xp 0001a000 fe:00 6293221 /usr/bin/locks",
        )
        .expect("line");
        assert_eq!(info.bias_for(&text), Some(0x55e7e9fa5000 - 0x1b000));
    }

    #[test]
    fn unknown_process_gives_just_the_ip() {
        let mut u = Unwinder::new();
        assert!(!u.prepare(u32::MAX - 1));
        assert!(u.prepare(std::process::id()));
        assert!(u.maps(std::process::id()).is_some());
        let frames = u.unwind(
            u32::MAX - 1,
            Regs {
                ip: 0x1234,
                sp: 0,
                bp: 0,
            },
            &[],
        );
        assert_eq!(frames, vec![0x1234]);
    }
}

/// End-to-end: a real C program blocked in `pthread_mutex_lock`, observed from outside the way
/// the observer's stall scanner does it (no root needed for a child process).
#[cfg(test)]
mod live_tests {
    use super::*;
    use crate::proc::memory::read_process_memory;
    use crate::stacks::symbolize::Symbolizer;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
volatile int locked;
int counter;

void *holder(void *arg) {
    pthread_setname_np(pthread_self(), "holder");
    pthread_mutex_lock(&lock);
    locked = 1;
    for (;;)
        sleep(1000);
    return arg;
}

void *waiter_function(void *arg) {
    pthread_setname_np(pthread_self(), "waiter");
    pthread_mutex_lock(&lock); /* LOCK_LINE */
    counter++;
    pthread_mutex_unlock(&lock);
    return arg;
}

int main(void) {
    pthread_t a, b;
    pthread_create(&a, 0, holder, 0);
    while (!locked)
        usleep(1000);
    pthread_create(&b, 0, waiter_function, 0);
    pthread_join(b, 0);
    return 0;
}
"#;

    /// Kills and reaps the child whatever happens in the test.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    struct Blocked {
        child: KillOnDrop,
        _dir: tempfile::TempDir,
        pid: u32,
        regs: Regs,
        stack: Vec<u8>,
        lock_line: usize,
    }

    fn compile(dir: &Path, flags: &[&str]) -> std::path::PathBuf {
        let src = dir.join("stall.c");
        std::fs::write(&src, PROGRAM).expect("write source");
        let exe = dir.join("stall");
        let status = Command::new("cc")
            .args(flags)
            .args(["-g", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .expect("run cc");
        assert!(status.success(), "cc failed");
        exe
    }

    fn waiter_tid(pid: u32) -> Option<u32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "waiter")
            })
            .and_then(|t| t.file_name().to_str()?.parse().ok())
    }

    /// sp and pc from `/proc/PID/task/TID/syscall` once the thread sits in futex (202).
    fn blocked_regs(pid: u32, tid: u32) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.first() != Some(&"202") || fields.len() < 9 {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        Some((hex(fields[7])?, hex(fields[8])?))
    }

    fn start_blocked(flags: &[&str]) -> Blocked {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = compile(dir.path(), flags);
        let child = Command::new(&exe)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn");
        let child = KillOnDrop(child);
        let pid = child.0.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (tid, sp, ip) = loop {
            assert!(Instant::now() < deadline, "waiter never blocked in futex");
            if let Some(tid) = waiter_tid(pid) {
                if let Some((sp, ip)) = blocked_regs(pid, tid) {
                    break (tid, sp, ip);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stack = read_process_memory(pid, sp, 8192).expect("process_vm_readv of the stack");
        assert!(stack.len() >= 512, "stack copy too short: {}", stack.len());
        let lock_line = PROGRAM
            .lines()
            .position(|l| l.contains("LOCK_LINE"))
            .expect("marker")
            + 1;
        log::debug!("pid {pid} tid {tid} sp {sp:#x} ip {ip:#x}");
        Blocked {
            child,
            _dir: dir,
            pid,
            regs: Regs { ip, sp, bp: 0 },
            stack,
            lock_line,
        }
    }

    fn assert_waiter_stack(frames: &[String], lock_line: usize) {
        let lock = frames
            .iter()
            .position(|f| f.contains("pthread_mutex_lock"))
            .unwrap_or_else(|| panic!("no pthread_mutex_lock in {frames:#?}"));
        let want = format!("waiter_function (stall.c:{lock_line})");
        let waiter = frames
            .iter()
            .position(|f| f == &want)
            .unwrap_or_else(|| panic!("no {want:?} in {frames:#?}"));
        assert!(lock < waiter, "{frames:#?}");
        assert!(
            frames[waiter + 1..]
                .iter()
                .any(|f| f.contains("start_thread")),
            "{frames:#?}"
        );
    }

    fn unwind_and_symbolize(flags: &[&str]) {
        let b = start_blocked(flags);
        let t0 = Instant::now();
        let mut unwinder = Unwinder::new();
        let addrs = unwinder.unwind(b.pid, b.regs, &b.stack);
        let t1 = Instant::now();
        let mut symbolizer = Symbolizer::new();
        let frames = symbolizer.symbolize(b.pid, &addrs);
        let t2 = Instant::now();
        let addrs_warm = unwinder.unwind(b.pid, b.regs, &b.stack);
        let t3 = Instant::now();
        let frames_warm = symbolizer.symbolize(b.pid, &addrs_warm);
        let t4 = Instant::now();
        eprintln!(
            "{flags:?}: {} addrs, {} frames: cold unwind {:?} + symbolize {:?}; \
             warm unwind {:?} + symbolize {:?}\n{frames:#?}",
            addrs.len(),
            frames.len(),
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t4 - t3,
        );
        assert_eq!(addrs, addrs_warm);
        assert_eq!(frames, frames_warm);
        assert_waiter_stack(&frames, b.lock_line);
        drop(b.child);
    }

    #[test]
    fn unwinds_code_without_frame_pointers() {
        unwind_and_symbolize(&["-O1", "-fomit-frame-pointer"]);
    }

    #[test]
    fn unwinds_code_with_frame_pointers() {
        unwind_and_symbolize(&["-O1", "-fno-omit-frame-pointer"]);
    }

    #[test]
    fn unwinds_code_inlined_at_o2() {
        unwind_and_symbolize(&["-O2", "-fomit-frame-pointer"]);
    }

    #[test]
    fn symbolizes_after_the_process_exited() {
        let b = start_blocked(&["-O1", "-fomit-frame-pointer"]);
        let mut unwinder = Unwinder::new();
        let addrs = unwinder.unwind(b.pid, b.regs, &b.stack);
        let maps = unwinder.forget(b.pid).expect("maps were cached");
        let pid = b.pid;
        drop(b.child);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "child reaped");

        let mut symbolizer = Symbolizer::new();
        symbolizer.insert_maps(maps);
        let frames = symbolizer.symbolize(pid, &addrs);
        assert_waiter_stack(&frames, b.lock_line);
    }

    #[test]
    fn truncated_stack_copy_stops_gracefully() {
        let b = start_blocked(&["-O1", "-fomit-frame-pointer"]);
        let mut unwinder = Unwinder::new();
        let full = unwinder.unwind(b.pid, b.regs, &b.stack);
        for len in [0, 8, 64, 200] {
            let part = unwinder.unwind(b.pid, b.regs, &b.stack[..len.min(b.stack.len())]);
            assert!(!part.is_empty() && part.len() <= full.len());
            assert_eq!(part[..], full[..part.len()], "a prefix of the full stack");
        }
    }
}
