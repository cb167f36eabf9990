//! What observer learns by decoding a Go function's machine code (amd64, iced-x86).
//!
//! Function bounds come from `.gopclntab`, so all of this works on stripped binaries too.

use std::collections::BTreeSet;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register,
};

/// Instructions inspected for the stack-growth check: it is always the first thing a Go
/// function does (at most LEAQ/MOVQ+SUBQ+JCS, then CMPQ, then Jcc).
const PROLOGUE_WINDOW: usize = 8;

/// Go's `g.stackguard0` offset: the stack check compares against `16(R14)`.
const STACKGUARD0: u64 = 16;

fn decode(code: &[u8], entry: u64) -> impl Iterator<Item = Instruction> + '_ {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    std::iter::from_fn(move || {
        if !decoder.can_decode() {
            return None;
        }
        let instr = decoder.decode();
        (!instr.is_invalid()).then_some(instr)
    })
}

/// Virtual addresses of every RET in `code` (the bytes of one function starting at `entry`).
pub(crate) fn ret_addrs(code: &[u8], entry: u64) -> Vec<u64> {
    decode(code, entry)
        .filter(|i| i.flow_control() == FlowControl::Return)
        .map(|i| i.ip())
        .collect()
}

/// Address of the first instruction after the morestack check, or `entry` when the function
/// has none (NOSPLIT: its entry probe fires once anyway).
///
/// The check is `CMPQ SP|R12, 16(R14)` (or through another g register before regabi),
/// followed by a conditional jump forward to the `CALL runtime.morestack` block at the end of
/// the function, which jumps back to the entry after growing the stack: that is why a probe
/// at the entry fires twice, and one after the Jcc once.
pub(crate) fn after_stack_check(code: &[u8], entry: u64) -> u64 {
    let instrs: Vec<Instruction> = decode(code, entry).take(PROLOGUE_WINDOW).collect();
    for (i, cmp) in instrs.iter().enumerate() {
        if !is_stack_guard_compare(cmp) {
            continue;
        }
        if let Some(jcc) = instrs.get(i + 1) {
            let forward = jcc.near_branch_target() > jcc.ip();
            if jcc.flow_control() == FlowControl::ConditionalBranch && forward {
                return jcc.next_ip();
            }
        }
    }
    entry
}

/// `CMP SP-ish, [reg + 16]`: compares a stack pointer value with `g.stackguard0`.
/// The address after the frame-pointer setup that follows the stack check: `MOVQ SP, BP`
/// (Go 1.21+: after `PUSHQ BP`) or `LEAQ n(SP), BP` (older: after `SUBQ`/`MOVQ BP, n(SP)`). A
/// probe there sees a complete frame-pointer chain, so a stack taken in it names the direct
/// caller, on any kernel. Falls back to `after_stack_check` when no setup is found (frameless
/// functions).
pub(crate) fn after_frame_setup(code: &[u8], entry: u64) -> u64 {
    let start = after_stack_check(code, entry);
    let offset = start.saturating_sub(entry) as usize;
    let Some(rest) = code.get(offset..) else {
        return start;
    };
    for ins in decode(rest, start).take(4) {
        let sets_bp_from_sp = ins.op0_register() == Register::RBP
            && ((ins.mnemonic() == Mnemonic::Mov && ins.op1_register() == Register::RSP)
                || (ins.mnemonic() == Mnemonic::Lea && ins.memory_base() == Register::RSP));
        if sets_bp_from_sp {
            return ins.next_ip();
        }
        if ins.flow_control() != FlowControl::Next {
            break;
        }
    }
    start
}

fn is_stack_guard_compare(i: &Instruction) -> bool {
    if !matches!(i.code(), Code::Cmp_r64_rm64 | Code::Cmp_rm64_r64) || i.op_count() != 2 {
        return false;
    }
    let reg_op = match (i.op0_kind(), i.op1_kind()) {
        (OpKind::Register, OpKind::Memory) => i.op0_register(),
        (OpKind::Memory, OpKind::Register) => i.op1_register(),
        _ => return false,
    };
    matches!(reg_op, Register::RSP | Register::R12)
        && i.memory_displacement64() == STACKGUARD0
        && i.memory_index() == Register::None
        && i.memory_base() != Register::RIP
}

/// The address of a 3-word slice header `{ptr, len, cap}` that `code` touches at all three
/// words through RIP-relative operands, among addresses accepted by `plausible`.
///
/// Used on `runtime.allgadd`, which appends to `runtime.allgs`: it reads len and cap and
/// writes ptr, len and cap, and touches no other slice that way.
pub(crate) fn slice_header_target(
    code: &[u8],
    entry: u64,
    plausible: impl Fn(u64) -> bool,
) -> Option<u64> {
    let targets: BTreeSet<u64> = decode(code, entry)
        .filter(|i| i.is_ip_rel_memory_operand())
        .map(|i| i.ip_rel_memory_address())
        .filter(|&a| plausible(a))
        .collect();
    targets
        .iter()
        .copied()
        .find(|&a| targets.contains(&(a + 8)) && targets.contains(&(a + 16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prologue and epilogue of Go 1.27's runtime.allgadd (see `objdump -d`), shortened.
    fn allgadd_like() -> (Vec<u8>, u64) {
        let entry = 0x453b80;
        let code = vec![
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x0f, 0x86, 0x10, 0x00, 0x00, 0x00, // jbe +0x10
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp, rsp
            0x48, 0x8b, 0x0d, 0x00, 0x10, 0x00, 0x00, // mov rcx, [rip+0x1000]
            0x48, 0x8b, 0x1d, 0xf1, 0x0f, 0x00, 0x00, // mov rbx, [rip+0xff1]
            0x48, 0x89, 0x05, 0xe2, 0x0f, 0x00, 0x00, // mov [rip+0xfe2], rax
            0x5d, // pop rbp
            0xc3, // ret
            0xe8, 0x00, 0x00, 0x00, 0x00, // call (morestack)
            0xeb, 0xd4, // jmp entry
        ];
        (code, entry)
    }

    #[test]
    fn finds_rets_and_prologue_end() {
        let (code, entry) = allgadd_like();
        assert_eq!(ret_addrs(&code, entry), vec![entry + 36]);
        assert_eq!(after_stack_check(&code, entry), entry + 10);
    }

    #[test]
    fn no_stack_check_means_entry() {
        let code = [0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
        assert_eq!(after_stack_check(&code, 0x1000), 0x1000);
        assert_eq!(ret_addrs(&code, 0x1000), vec![0x1005]);
        assert!(ret_addrs(&[], 0x1000).is_empty());
    }

    #[test]
    fn large_frame_check_through_r12() {
        // lea r12, [rsp-0x1000]; cmp r12, [r14+0x10]; jbe +0x20; push rbp
        let code = [
            0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xf0, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86,
            0x20, 0x00, 0x00, 0x00, 0x55,
        ];
        assert_eq!(after_stack_check(&code, 0x2000), 0x2000 + 18);
    }

    #[test]
    fn finds_the_slice_header() {
        let (code, entry) = allgadd_like();
        // Operands: [next_ip + disp]: 0x453b95+0x1000, 0x453b9c+0xff1, 0x453ba3+0xfe2.
        let found = slice_header_target(&code, entry, |_| true);
        assert_eq!(found, Some(0x454b85));
        assert_eq!(slice_header_target(&code, entry, |a| a != 0x454b8d), None);
    }
}

#[cfg(test)]
mod frame_setup_tests {
    use super::after_frame_setup;

    const ENTRY: u64 = 0x479260;

    #[test]
    fn go_1_21_plus_push_mov() {
        // cmp 0x10(%r14),%rsp; jbe +0xdc; push %rbp; mov %rsp,%rbp; sub $0x10,%rsp
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xdc, 0x00, 0x00, 0x00, 0x55, 0x48, 0x89, 0xe5,
            0x48, 0x83, 0xec, 0x10,
        ];
        assert_eq!(after_frame_setup(&code, ENTRY), ENTRY + 14);
    }

    #[test]
    fn go_1_19_sub_mov_lea() {
        // cmp 0x10(%r14),%rsp; jbe +0xe9; sub $0x18,%rsp; mov %rbp,0x10(%rsp); lea 0x10(%rsp),%rbp
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xe9, 0x00, 0x00, 0x00, 0x48, 0x83, 0xec, 0x18,
            0x48, 0x89, 0x6c, 0x24, 0x10, 0x48, 0x8d, 0x6c, 0x24, 0x10, 0x49, 0x8b, 0x56, 0x30,
        ];
        assert_eq!(after_frame_setup(&code, ENTRY), ENTRY + 24);
    }

    #[test]
    fn frameless_function_keeps_the_stack_check_point() {
        // cmp 0x10(%r14),%rsp; jbe +0x10; mov 0x30(%r14),%rdx; ret
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0x00, 0x00, 0x00, 0x49, 0x8b, 0x56, 0x30,
            0xc3,
        ];
        assert_eq!(after_frame_setup(&code, ENTRY), ENTRY + 10);
    }
}
