//! Register snapshots and user-stack copies for `.eh_frame` unwinding in userspace.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::generated::{
        bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user, bpf_task_pt_regs,
    },
};
use observer_common::{UserStack, STACK_COPY_BYTES};

/// The user registers the current task entered the kernel with.
#[inline(always)]
pub fn current_user_regs() -> Option<pt_regs> {
    // SAFETY: bpf_task_pt_regs on the current task returns its saved user registers; the copy
    // goes through bpf_probe_read_kernel, which never faults.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const pt_regs;
        if regs.is_null() {
            return None;
        }
        let mut out = core::mem::MaybeUninit::<pt_regs>::uninit();
        let rc = bpf_probe_read_kernel(
            out.as_mut_ptr().cast(),
            core::mem::size_of::<pt_regs>() as u32,
            regs.cast(),
        );
        if rc != 0 {
            return None;
        }
        Some(out.assume_init())
    }
}

/// Copies the user stack at `sp` of the *current address space* into `dst`.
///
/// A fixed-size read fails as a whole when it crosses the end of the stack mapping, so try
/// smaller sizes until one fits: shallow stacks near the top of their mapping still unwind.
#[inline(always)]
pub unsafe fn copy_user_stack(dst: *mut UserStack, ip: u64, sp: u64, bp: u64) {
    unsafe {
        (*dst).ip = ip;
        (*dst).sp = sp;
        (*dst).bp = bp;
        (*dst).len = 0;
        if sp == 0 {
            return;
        }
        let buf = (*dst).bytes.as_mut_ptr();
        let src = sp as *const core::ffi::c_void;
        let mut len = STACK_COPY_BYTES as u32;
        if bpf_probe_read_user(buf.cast(), len, src) != 0 {
            len = (STACK_COPY_BYTES / 2) as u32;
            if bpf_probe_read_user(buf.cast(), len, src) != 0 {
                len = (STACK_COPY_BYTES / 4) as u32;
                if bpf_probe_read_user(buf.cast(), len, src) != 0 {
                    len = (STACK_COPY_BYTES / 16) as u32;
                    if bpf_probe_read_user(buf.cast(), len, src) != 0 {
                        len = 0;
                    }
                }
            }
        }
        (*dst).len = len as u64;
    }
}
