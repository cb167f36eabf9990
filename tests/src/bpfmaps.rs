//! Reading the kernel maps a running observer holds, as an administrator would with bpftool:
//! what is left in them is what observer pays for on every scan.

use std::fs;

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> libc::c_long {
    // SAFETY: bpf(2) reads `attr` (its size is passed) and writes only through pointers it
    // holds, each of which points at a live buffer of the size the command implies.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    }
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing an fd this module opened.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// `(name, key size)` of the map with this id, with an fd for it.
fn open_map(id: u32) -> Option<(Fd, String, u32)> {
    let mut attr = [u64::from(id), 0, 0];
    let fd = bpf(BPF_MAP_GET_FD_BY_ID, &mut attr);
    if fd < 0 {
        return None;
    }
    let fd = Fd(fd as libc::c_int);
    // struct bpf_map_info: key_size (u32) at byte 8, name (char[16]) at byte 24.
    let mut info = [0u8; 88];
    let mut attr = [
        fd.0 as u64 | ((info.len() as u64) << 32),
        info.as_mut_ptr() as u64,
        0,
    ];
    if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) != 0 {
        return None;
    }
    let key_size = u32::from_le_bytes(info[8..12].try_into().ok()?);
    let name = &info[24..40];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some((
        fd,
        String::from_utf8_lossy(&name[..end]).into_owned(),
        key_size,
    ))
}

/// The u32 keys of the map called `name` that process `pid` holds open (e.g. the thread ids
/// in observer's `IN_FLIGHT`). `None` when it holds no such map. Needs root.
pub fn u32_keys_of_map(pid: u32, name: &str) -> Option<Vec<u32>> {
    let mut ids: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let (fd, _, _) = ids
        .into_iter()
        .filter_map(open_map)
        .find(|(_, n, key_size)| n == name && *key_size == 4)?;
    let mut keys = Vec::new();
    let mut key = 0u32;
    let mut next = 0u32;
    let mut first = true;
    // Bounded: a hash map's iteration ends, but a map changing under us may restart it.
    for _ in 0..1_000_000 {
        // union bpf_attr for map element commands: { map_fd, pad, key ptr, next_key ptr }.
        let key_ptr = if first { 0 } else { &key as *const u32 as u64 };
        let mut attr = [fd.0 as u64, key_ptr, &mut next as *mut u32 as u64];
        if bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) != 0 {
            break;
        }
        keys.push(next);
        key = next;
        first = false;
    }
    Some(keys)
}
