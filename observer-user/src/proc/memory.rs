//! Copies of a target process's memory, read with `process_vm_readv` (never ptrace, never a
//! write).

use std::io;

/// Copies `len` bytes at `addr` of process `pid`; fewer when the range runs into memory that
/// cannot be read.
pub fn read_process_memory(pid: u32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = read_process_memory_into(pid, &[(addr, len)], std::slice::from_mut(&mut buf))?;
    buf.truncate(n);
    Ok(buf)
}

/// Copies each of `ranges` (address, length) of process `pid` into the buffer of the same
/// index, all in one call, and returns how many bytes were transferred: the kernel fills the
/// buffers in order and stops at the first range it cannot read, so the ranges before it are
/// complete and the rest untouched. At most `IOV_MAX` (1024) ranges per call.
pub fn read_process_memory_into(
    pid: u32,
    ranges: &[(u64, usize)],
    bufs: &mut [Vec<u8>],
) -> io::Result<usize> {
    let local: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let remote: Vec<libc::iovec> = ranges
        .iter()
        .map(|&(addr, len)| libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: every local iovec points into a live buffer of exactly its length, and the
    // buffers outlive the call; the remote iovecs are only read by the kernel.
    let n = unsafe {
        libc::process_vm_readv(
            pid,
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_stops_at_an_unreadable_range() {
        let here: [u8; 4] = *b"abcd";
        let there: [u8; 3] = *b"xyz";
        let pid = std::process::id();
        let addr = |b: &[u8]| b.as_ptr() as usize as u64;
        assert_eq!(
            read_process_memory(pid, addr(&here), 4).expect("own memory"),
            b"abcd"
        );
        let mut bufs = vec![vec![0u8; 4], vec![0u8; 8], vec![0u8; 3]];
        let ranges = [(addr(&here), 4), (0, 8), (addr(&there), 3)];
        let n = read_process_memory_into(pid, &ranges, &mut bufs).expect("first range");
        assert_eq!(n, 4, "the kernel stops at the unmapped page");
        assert_eq!(bufs[0], b"abcd");
        assert_eq!(bufs[2], [0u8; 3]);
        assert!(read_process_memory(pid, 0, 8).is_err());
    }
}
