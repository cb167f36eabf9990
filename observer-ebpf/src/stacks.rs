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
/// A read fails as a whole when any byte is unmapped, and the stack of a main thread ends a few
/// KiB above a shallow `sp`. So copy page by page: up to the end of `sp`'s page, then whole
/// pages, stopping at the first page that cannot be read. Everything up to the top of the stack
/// is kept, and at least `STACK_COPY_BYTES - 4096` bytes when the stack is deep.
#[inline(always)]
pub unsafe fn copy_user_stack(dst: *mut UserStack, ip: u64, sp: u64, bp: u64) {
    const PAGE: u64 = 4096;
    unsafe {
        (*dst).ip = ip;
        (*dst).sp = sp;
        (*dst).bp = bp;
        (*dst).len = 0;
        if sp == 0 {
            return;
        }
        let buf = (*dst).bytes.as_mut_ptr();
        // 1..=PAGE bytes up to the page boundary.
        let first = (PAGE - (sp & (PAGE - 1))) & (2 * PAGE - 1);
        if first == 0 || first > PAGE {
            return;
        }
        if bpf_probe_read_user(buf.cast(), first as u32, sp as *const core::ffi::c_void) != 0 {
            return;
        }
        let mut len = first;
        for _ in 0..(STACK_COPY_BYTES as u64 / PAGE - 1) {
            // len <= STACK_COPY_BYTES - PAGE here, so the page fits in the buffer.
            let off = len & (STACK_COPY_BYTES as u64 - 1);
            if off + PAGE > STACK_COPY_BYTES as u64 {
                break;
            }
            let rc = bpf_probe_read_user(
                buf.add(off as usize).cast(),
                PAGE as u32,
                (sp + len) as *const core::ffi::c_void,
            );
            if rc != 0 {
                break;
            }
            len += PAGE;
        }
        (*dst).len = len;
    }
}
