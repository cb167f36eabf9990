//! Which mutexes a Go function locks, read from its machine code (amd64): what naming the
//! likely holder of a lock needs when no probe saw it take the lock.
//!
//! `sync.Mutex.Lock` is inlined into its callers: a `LOCK CMPXCHG` on the mutex's state word
//! (its first field, so its address is the mutex's) and, on contention, a call to `lockSlow`
//! with the mutex's address in `AX` (register ABI). For a mutex that is a package variable
//! both carry its link-time address, RIP-relative; for one inside a struct they carry a
//! register and the mutex is not known statically (only the call site is).

use std::collections::BTreeSet;

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Callees that take a mutex (their first argument, `AX`, is its address), in every layout
/// since Go 1.19 (1.24 moved the mutex into `internal/sync`).
const LOCK_ROUTINES: &[&str] = &[
    "sync.(*Mutex).Lock",
    "sync.(*Mutex).lockSlow",
    "internal/sync.(*Mutex).Lock",
    "internal/sync.(*Mutex).lockSlow",
    "sync.(*RWMutex).Lock",
];

/// Instructions looked back from a lock call for the one that set its argument.
const ARG_WINDOW: usize = 6;

pub fn is_lock_routine(name: &str) -> bool {
    LOCK_ROUTINES.contains(&name)
}

/// One call to a lock routine in a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockCall {
    /// Its return address (link-time): what a waiter's stack holds in this function's frame.
    pub ret: u64,
    /// The mutex's link-time address when it is a package variable.
    pub mutex: Option<u64>,
}

/// The locking a function's code does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuncLocks {
    pub entry: u64,
    pub name: String,
    pub calls: Vec<LockCall>,
    /// Package-variable mutexes it locks (inlined fast paths and slow-path calls).
    pub mutexes: BTreeSet<u64>,
}

/// Decodes one function (`code` at link-time `entry`); `callee_name(addr)` names a call's
/// target.
pub(crate) fn func_locks(
    code: &[u8],
    entry: u64,
    name: &str,
    callee_name: impl Fn(u64) -> Option<String>,
) -> FuncLocks {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut recent: Vec<Instruction> = Vec::with_capacity(ARG_WINDOW);
    let mut out = FuncLocks {
        entry,
        name: name.to_string(),
        ..FuncLocks::default()
    };
    while decoder.can_decode() {
        let i = decoder.decode();
        if i.is_invalid() {
            break;
        }
        if i.has_lock_prefix() && i.mnemonic() == Mnemonic::Cmpxchg && i.is_ip_rel_memory_operand()
        {
            out.mutexes.insert(i.ip_rel_memory_address());
        }
        if i.code() == Code::Call_rel32_64
            && callee_name(i.near_branch_target()).is_some_and(|n| is_lock_routine(&n))
        {
            let mutex = argument_address(&recent);
            out.mutexes.extend(mutex);
            out.calls.push(LockCall {
                ret: i.next_ip(),
                mutex,
            });
        }
        if recent.len() == ARG_WINDOW {
            recent.remove(0);
        }
        recent.push(i);
    }
    out
}

/// The RIP-relative address last loaded into `AX` before a call (`LEAQ sym(SB), AX`), if the
/// last instruction writing `AX` is such a load.
fn argument_address(before: &[Instruction]) -> Option<u64> {
    let last_ax_write = before.iter().rev().find(|i| {
        i.op_count() > 0
            && i.op0_kind() == OpKind::Register
            && matches!(i.op0_register(), Register::RAX | Register::EAX)
    })?;
    (last_ax_write.mnemonic() == Mnemonic::Lea && last_ax_write.is_ip_rel_memory_operand())
        .then(|| last_ax_write.ip_rel_memory_address())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: u64 = 0x40_1000;
    const LOCK_SLOW: u64 = 0x40_8000;
    const OTHER: u64 = 0x40_9000;
    const INDEX_LOCK: u64 = 0x60_0040;

    fn names(addr: u64) -> Option<String> {
        match addr {
            LOCK_SLOW => Some("internal/sync.(*Mutex).lockSlow".into()),
            OTHER => Some("time.Sleep".into()),
            _ => None,
        }
    }

    /// Machine code at ENTRY, one instruction at a time (RIP-relative operands are relative
    /// to the next instruction, so each is placed knowing where it ends).
    #[derive(Default)]
    struct Asm(Vec<u8>);

    impl Asm {
        fn here(&self) -> u64 {
            ENTRY + self.0.len() as u64
        }
        fn rel32(&mut self, opcode: &[u8], target: u64) -> &mut Self {
            let next = self.here() + opcode.len() as u64 + 4;
            self.0.extend_from_slice(opcode);
            self.0
                .extend_from_slice(&(target.wrapping_sub(next) as i32).to_le_bytes());
            self
        }
        /// `LOCK CMPXCHGL CX, target(RIP)`
        fn lock_cas(&mut self, target: u64) -> &mut Self {
            self.rel32(&[0xf0, 0x0f, 0xb1, 0x0d], target)
        }
        /// `LEAQ target(RIP), AX`
        fn lea_rax(&mut self, target: u64) -> &mut Self {
            self.rel32(&[0x48, 0x8d, 0x05], target)
        }
        fn call(&mut self, target: u64) -> &mut Self {
            self.rel32(&[0xe8], target)
        }
        /// `MOVQ BX, AX`
        fn mov_rax_rbx(&mut self) -> &mut Self {
            self.0.extend_from_slice(&[0x48, 0x89, 0xd8]);
            self
        }
    }

    #[test]
    fn a_package_mutex_is_known_from_its_inlined_cas_and_slow_call() {
        let mut a = Asm::default();
        a.lock_cas(INDEX_LOCK).lea_rax(INDEX_LOCK).call(LOCK_SLOW);
        let ret = a.here();
        a.call(OTHER);
        let f = func_locks(&a.0, ENTRY, "main.rebuild", names);
        assert_eq!(f.mutexes.iter().copied().collect::<Vec<_>>(), [INDEX_LOCK]);
        assert_eq!(
            f.calls,
            [LockCall {
                ret,
                mutex: Some(INDEX_LOCK)
            }],
            "time.Sleep is not a lock call"
        );
    }

    #[test]
    fn a_mutex_in_a_struct_has_a_call_site_but_no_address() {
        let mut a = Asm::default();
        a.lea_rax(INDEX_LOCK).mov_rax_rbx().call(LOCK_SLOW);
        let f = func_locks(&a.0, ENTRY, "main.(*store).get", names);
        assert_eq!(f.calls.len(), 1);
        assert_eq!(f.calls[0].mutex, None, "AX was overwritten from a register");
        assert!(f.mutexes.is_empty());
    }
}
