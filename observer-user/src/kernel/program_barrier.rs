//! Waiting until no eBPF program that started before now is still running.
//!
//! The aggregate maps come in two copies (see `AGG_SIDE` in observer-ebpf): userspace points the
//! programs at the other copy, then must know that none of them still adds to the old one
//! before it reads and empties it. The kernel has no "wait for BPF programs" call, but an
//! update of an `ARRAY_OF_MAPS` from userspace waits for an RCU grace period before it
//! returns (`maybe_wait_bpf_programs` in kernel/bpf/syscall.c; the kernel's own BPF selftests
//! use it the same way, `kern_sync_rcu`). Tracepoint programs and uprobes that do not sleep
//! (all of observer's) run inside RCU read-side sections, so once the update returns, every
//! one of them that could have read the old side has finished.
//!
//! The maps here are created with the raw `bpf(2)` call: aya's userspace API has no way to
//! create a map outside an object file.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// `union bpf_attr` is larger than any command's fields; unused bytes must be zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn zeroed() -> Self {
        Attr([0; 128])
    }

    fn put_u32(&mut self, offset: usize, v: u32) {
        self.0[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn put_u64(&mut self, offset: usize, v: u64) {
        self.0[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a zero-padded bpf_attr of the size passed; the kernel reads (and for
    // some commands writes) only within it; pointers inside it point at live locals.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Creates a map: `map_type`, `key_size`, `value_size`, `max_entries`, `map_flags` and
/// `inner_map_fd` are the first six u32 of the `BPF_MAP_CREATE` attributes.
fn create_map(map_type: u32, max_entries: u32, inner: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let mut attr = Attr::zeroed();
    attr.put_u32(0, map_type);
    attr.put_u32(4, 4);
    attr.put_u32(8, 4);
    attr.put_u32(12, max_entries);
    if let Some(inner) = inner {
        attr.put_u32(20, inner.as_raw_fd() as u32);
    }
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// An `ARRAY_OF_MAPS` of one slot and the map put in it (the programs never see either).
pub struct ProgramBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl ProgramBarrier {
    pub fn new() -> io::Result<Self> {
        let inner = create_map(BPF_MAP_TYPE_ARRAY, 1, None)?;
        let outer = create_map(BPF_MAP_TYPE_ARRAY_OF_MAPS, 1, Some(&inner))?;
        Ok(Self { outer, inner })
    }

    /// Returns once every eBPF program running when it was called has finished.
    pub fn wait(&self) -> io::Result<()> {
        let key: u32 = 0;
        let value: u32 = self.inner.as_raw_fd() as u32;
        let mut attr = Attr::zeroed();
        // BPF_MAP_*_ELEM: u32 map_fd, (pad), u64 key pointer, u64 value pointer, u64 flags.
        attr.put_u32(0, self.outer.as_raw_fd() as u32);
        attr.put_u64(8, &key as *const u32 as u64);
        attr.put_u64(16, &value as *const u32 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_is_created_and_waits_as_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("NOTE: not root: creating BPF maps needs CAP_BPF; the barrier is not tried here (CI runs this as root)");
            return;
        }
        let barrier = ProgramBarrier::new().expect("ARRAY_OF_MAPS creation");
        for _ in 0..3 {
            barrier.wait().expect("update of the ARRAY_OF_MAPS");
        }
    }

    #[test]
    fn attr_fields_land_at_their_offsets() {
        let mut a = Attr::zeroed();
        a.put_u32(4, 0x0102_0304);
        a.put_u64(8, u64::MAX);
        assert_eq!(&a.0[4..8], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&a.0[8..16], &[0xff; 8]);
        assert!(a.0[16..].iter().all(|&b| b == 0));
    }
}
