//! The likely holder of a goroutine lock nobody saw being taken: when the per-park probes are
//! off, a hold episode has no releaser, so the goroutines parked elsewhere at the same moment
//! are searched for one that is inside a function that locks the same mutex (a package
//! variable, known from the code) or, for a mutex inside a struct, past the very `Lock()` call
//! the others wait in. That is evidence, not proof (the function may have unlocked already),
//! so the alert calls it likely and says why.

use std::sync::Arc;

use crate::golang::lockrefs::FuncLocks;

/// What the search needs of the program's code, by link-time pc (a return address, or the
/// parked pc on top). The session hands in the executable, tests a table.
pub trait LockCode {
    fn func_locks(&mut self, pc: u64) -> Option<Arc<FuncLocks>>;
    /// Source line of the function at `pc` (the physical function, inlining aside).
    fn line(&mut self, pc: u64) -> Option<u32>;
}

/// The lock a goroutine waits for: the call it waits in, in the first frame that is not lock
/// machinery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWaited {
    pub func_entry: u64,
    pub func_name: String,
    /// Return address of the lock call in that frame.
    pub call_ret: u64,
    /// The mutex's link-time address when it is a package variable.
    pub mutex: Option<u64>,
}

impl LockWaited {
    /// What tells two waits on the same lock apart from others (for one search per lock).
    pub fn key(&self) -> u64 {
        self.mutex.unwrap_or(self.call_ret)
    }
}

/// Why a goroutine is named the likely holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderBasis {
    /// It is inside `func`, which locks the same package-variable mutex.
    SameMutex { func: String, mutex: u64 },
    /// It is in the waiters' own function, at a later line than their `Lock()` call.
    PastSameCall { func: String, lock_line: u32 },
}

fn is_lock_machinery(name: &str) -> bool {
    name.starts_with("runtime.") || name.starts_with("sync.") || name.starts_with("internal/sync.")
}

/// The lock the goroutine with (link-time) stack `pcs` waits for, if it waits in a mutex's
/// `Lock()`: the first frame outside the runtime and `sync` must be at a lock call.
pub fn lock_waited(pcs: &[u64], code: &mut dyn LockCode) -> Option<LockWaited> {
    for &pc in pcs.iter().skip(1) {
        let Some(f) = code.func_locks(pc) else {
            continue;
        };
        if is_lock_machinery(&f.name) {
            continue;
        }
        let call = f.calls.iter().find(|c| c.ret == pc)?;
        return Some(LockWaited {
            func_entry: f.entry,
            func_name: f.name.clone(),
            call_ret: call.ret,
            mutex: call.mutex,
        });
    }
    None
}

/// Whether the goroutine with stack `pcs` is likely the holder of `waited`, and why.
pub fn holder_basis(
    waited: &LockWaited,
    pcs: &[u64],
    code: &mut dyn LockCode,
) -> Option<HolderBasis> {
    if let Some(own) = lock_waited(pcs, code) {
        if own.key() == waited.key() {
            return None; // one more waiter
        }
    }
    for &pc in pcs.iter().skip(1) {
        let Some(f) = code.func_locks(pc) else {
            continue;
        };
        if is_lock_machinery(&f.name) {
            continue;
        }
        if let Some(m) = waited.mutex {
            if f.mutexes.contains(&m) {
                return Some(HolderBasis::SameMutex {
                    func: f.name.clone(),
                    mutex: m,
                });
            }
        } else if f.entry == waited.func_entry && pc != waited.call_ret {
            let (Some(lock_line), Some(here)) = (code.line(waited.call_ret), code.line(pc)) else {
                continue;
            };
            if here > lock_line {
                return Some(HolderBasis::PastSameCall {
                    func: f.name.clone(),
                    lock_line,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::golang::lockrefs::LockCall;

    const INDEX_LOCK: u64 = 0x60_0040;

    /// Functions by [entry, end), and lines by pc.
    struct Table {
        funcs: Vec<(u64, u64, Arc<FuncLocks>)>,
        lines: HashMap<u64, u32>,
    }

    impl LockCode for Table {
        fn func_locks(&mut self, pc: u64) -> Option<Arc<FuncLocks>> {
            self.funcs
                .iter()
                .find(|(lo, hi, _)| (*lo..*hi).contains(&pc))
                .map(|(_, _, f)| f.clone())
        }
        fn line(&mut self, pc: u64) -> Option<u32> {
            self.lines.get(&pc).copied()
        }
    }

    fn func(entry: u64, name: &str, calls: &[(u64, Option<u64>)]) -> (u64, u64, Arc<FuncLocks>) {
        let calls: Vec<LockCall> = calls
            .iter()
            .map(|&(ret, mutex)| LockCall { ret, mutex })
            .collect();
        let f = FuncLocks {
            entry,
            name: name.into(),
            mutexes: calls.iter().filter_map(|c| c.mutex).collect(),
            calls,
        };
        (entry, entry + 0x100, Arc::new(f))
    }

    fn table() -> Table {
        Table {
            funcs: vec![
                func(0x1000, "runtime.gopark", &[]),
                func(0x1100, "internal/sync.(*Mutex).lockSlow", &[]),
                func(0x1200, "time.Sleep", &[]),
                // lookupIndex: Lock at 0x2010 (line 50); rebuild: Lock at 0x2110 (line 42).
                func(0x2000, "main.lookupIndex", &[(0x2010, Some(INDEX_LOCK))]),
                func(
                    0x2100,
                    "main.rebuildIndexSlowly",
                    &[(0x2110, Some(INDEX_LOCK))],
                ),
                func(0x2200, "main.handler", &[]),
                // A struct mutex: (*store).get locks at 0x2310 (line 70), then calls out.
                func(0x2300, "main.(*store).get", &[(0x2310, None)]),
                func(0x2400, "main.other", &[(0x2410, Some(0x60_0100))]),
            ],
            lines: HashMap::from([(0x2310, 70), (0x2330, 72), (0x2305, 68)]),
        }
    }

    #[test]
    fn a_goroutine_inside_a_function_locking_the_same_package_mutex_is_the_likely_holder() {
        let mut code = table();
        let waiter = [0x1010, 0x1110, 0x2010, 0x2210];
        let waited = lock_waited(&waiter, &mut code).expect("waits in lookupIndex's Lock");
        assert_eq!(waited.func_name, "main.lookupIndex");
        assert_eq!(waited.mutex, Some(INDEX_LOCK));
        // Sleeping in rebuildIndexSlowly, under the lock.
        let holder = [0x1010, 0x1220, 0x2150, 0x2220];
        assert_eq!(
            holder_basis(&waited, &holder, &mut code),
            Some(HolderBasis::SameMutex {
                func: "main.rebuildIndexSlowly".into(),
                mutex: INDEX_LOCK
            })
        );
        // Another waiter is not the holder; a goroutine in code locking another mutex either.
        assert_eq!(holder_basis(&waited, &waiter, &mut code), None);
        let elsewhere = [0x1010, 0x1220, 0x2420, 0x2220];
        assert_eq!(holder_basis(&waited, &elsewhere, &mut code), None);
    }

    #[test]
    fn for_a_struct_mutex_only_a_goroutine_past_the_same_call_is_named() {
        let mut code = table();
        let waiter = [0x1010, 0x1110, 0x2310, 0x2210];
        let waited = lock_waited(&waiter, &mut code).unwrap();
        assert_eq!(waited.mutex, None);
        let past = [0x1010, 0x1220, 0x2330, 0x2220];
        assert_eq!(
            holder_basis(&waited, &past, &mut code),
            Some(HolderBasis::PastSameCall {
                func: "main.(*store).get".into(),
                lock_line: 70
            })
        );
        // Before the Lock() call in the same function: not past it.
        let before = [0x1010, 0x1220, 0x2305, 0x2220];
        assert_eq!(holder_basis(&waited, &before, &mut code), None);
    }

    #[test]
    fn a_wait_that_is_not_in_a_lock_call_has_no_lock() {
        let mut code = table();
        // Parked in time.Sleep from the handler: the first own frame is not at a lock call.
        assert_eq!(lock_waited(&[0x1010, 0x1220, 0x2220], &mut code), None);
        assert_eq!(lock_waited(&[0x1010], &mut code), None);
    }
}
