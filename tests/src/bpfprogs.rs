//! The BPF programs a process holds, and their names (fault tests: what observer leaves
//! behind in the kernel).

use std::fs;

/// Ids of the BPF programs a process holds open, from `/proc/PID/fdinfo` (program fds and
/// link fds both name their program), sorted and without duplicates.
pub fn bpf_prog_ids_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|info| prog_id_from_fdinfo(&info))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn prog_id_from_fdinfo(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("prog_id:"))
        .and_then(|id| id.trim().parse().ok())
}

/// The name of the loaded BPF program with this id, or `None` once no program has it (ids are
/// not reused soon: the kernel hands them out cyclically). Needs root.
pub fn bpf_prog_name(id: u32) -> Option<String> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // union bpf_attr, as the two commands read it: { prog_id } and { bpf_fd, info_len, info }.
    let mut attr = [0u64; 3];
    attr[0] = u64::from(id);
    // SAFETY: bpf(2) reads `attr` (its size is passed) and returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return None;
    }
    // struct bpf_prog_info: `name` is char[16] at byte 64.
    let mut info = [0u8; 96];
    let mut attr = [0u64; 3];
    attr[0] = fd as u64 | ((info.len() as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: the kernel writes at most info_len bytes into `info`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    // SAFETY: closing the fd opened above, which keeps the program alive while open.
    unsafe {
        libc::close(fd as libc::c_int);
    }
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    // The program existed even if its info could not be read.
    Some(if rc == 0 {
        String::from_utf8_lossy(&name[..end]).into_owned()
    } else {
        String::new()
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prog_ids_in_fdinfo() {
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nprog_id:\t119\n";
        let link = "link_type:\traw_tracepoint\nlink_id:\t7\nprog_tag:\tf356\nprog_id:\t120\n";
        assert_eq!(prog_id_from_fdinfo(prog), Some(119));
        assert_eq!(prog_id_from_fdinfo(link), Some(120));
        assert_eq!(prog_id_from_fdinfo("pos:\t0\nflags:\t02\n"), None);
    }

    #[test]
    fn no_bpf_programs_in_a_plain_process() {
        assert!(bpf_prog_ids_of(std::process::id()).is_empty());
    }
}
