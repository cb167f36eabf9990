//! Kernel code addresses to function names, from `/proc/kallsyms`.
//!
//! Only uninterruptible waits carry kernel stacks, and they are rare, so nothing is kept of the
//! ~120k-line table: each batch of unknown addresses is one pass over the file (about 50 ms),
//! and the names found are cached (bounded). The table also gives the scheduler's own code
//! (`.sched.text`: `schedule`, `io_schedule`, `wait_for_completion*`, mutex and rwsem sleeps):
//! the frames of how a thread sleeps, above the function that decided to wait.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
};

/// At most this many addresses stay named in the cache; beyond, it starts over.
const CACHE_MAX: usize = 8192;

/// One kernel frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFrame {
    /// `function`, or `function [module]`, or the address in hex when no symbol is readable
    /// (kptr_restrict hides the addresses from a reader without CAP_SYSLOG).
    pub name: String,
    /// In the scheduler's sleep code (`.sched.text`).
    pub sleeping: bool,
}

/// A kernel stack, innermost first, as captured inside `__schedule`: the tracing code that
/// took it, the scheduler's sleep code, then the code that waits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelStack {
    pub frames: Vec<KernelFrame>,
}

impl KernelStack {
    /// The stack a user reads, innermost first: the scheduler function the wait went to sleep
    /// through (`wait_for_completion_state`, `io_schedule`, `down_read`, `mutex_lock`, ...)
    /// and the kernel code below it, from the function that waits (`kernel_clone`,
    /// `folio_wait_bit_common`) down to the syscall or fault entry. The frames of the sleep
    /// itself (`__schedule`, `schedule`, ...) and of the tracing that took the stack are
    /// left out, as `/proc/PID/stack` does. Everything when the stack could not be named.
    pub fn wait_frames(&self) -> Vec<String> {
        let Some(first) = self.frames.iter().position(|f| f.sleeping) else {
            return self.frames.iter().map(|f| f.name.clone()).collect();
        };
        let after = self.frames[first..]
            .iter()
            .position(|f| !f.sleeping)
            .map_or(self.frames.len(), |i| first + i);
        self.frames[after - 1..]
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }
}

pub struct KernelSymbols {
    path: PathBuf,
    names: HashMap<u64, String>,
    /// `[__sched_text_start, __sched_text_end)`, once read.
    sched_text: Option<(u64, u64)>,
}

impl Default for KernelSymbols {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelSymbols {
    pub fn new() -> Self {
        Self::with_table(PathBuf::from("/proc/kallsyms"))
    }

    /// Reads names from a kallsyms-format file (tests).
    pub fn with_table(path: PathBuf) -> Self {
        Self {
            path,
            names: HashMap::new(),
            sched_text: None,
        }
    }

    /// Names the addresses of a kernel stack (innermost first).
    pub fn stack(&mut self, addrs: &[u64]) -> KernelStack {
        let missing: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|a| !self.names.contains_key(a))
            .collect();
        if !missing.is_empty() || self.sched_text.is_none() {
            self.look_up(&missing);
        }
        let sched = self.sched_text.unwrap_or((0, 0));
        let frames = addrs
            .iter()
            .map(|&a| KernelFrame {
                name: self
                    .names
                    .get(&a)
                    .cloned()
                    .unwrap_or_else(|| format!("{a:#x}")),
                sleeping: (sched.0..sched.1).contains(&a),
            })
            .collect();
        KernelStack { frames }
    }

    /// One pass over the table: for each address, the closest function symbol at or below it.
    fn look_up(&mut self, addrs: &[u64]) {
        let Ok(file) = File::open(&self.path) else {
            self.sched_text.get_or_insert((0, 0));
            return;
        };
        let mut best: Vec<(u64, String)> = vec![(0, String::new()); addrs.len()];
        let (mut sched_start, mut sched_end) = (0, 0);
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue; // addresses hidden (kptr_restrict): nothing to match
            }
            match name {
                "__sched_text_start" => sched_start = addr,
                "__sched_text_end" => sched_end = addr,
                _ => {}
            }
            if !matches!(kind, "t" | "T" | "w" | "W") || name.starts_with("__pfx_") {
                continue;
            }
            let module = parts.next();
            for (i, &a) in addrs.iter().enumerate() {
                if addr <= a && addr > best[i].0 {
                    best[i] = match module {
                        Some(module) => (addr, format!("{name} {module}")),
                        None => (addr, name.to_string()),
                    };
                }
            }
        }
        if self.names.len() + addrs.len() > CACHE_MAX {
            self.names.clear();
        }
        for (&a, (at, name)) in addrs.iter().zip(best) {
            if at != 0 {
                self.names.insert(a, name);
            }
        }
        if sched_start != 0 && sched_end > sched_start {
            self.sched_text = Some((sched_start, sched_end));
        } else {
            self.sched_text.get_or_insert((0, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ffffffff81000000 T _text
ffffffff8135f8f0 T kernel_clone
ffffffff81360180 t __pfx___do_sys_vfork
ffffffff81360190 t __do_sys_vfork
ffffffff81400000 d some_data
ffffffff82000000 T do_syscall_64
ffffffff82247b40 T __sched_text_start
ffffffff82247b50 t __schedule
ffffffff82248b50 T schedule
ffffffff82249980 T wait_for_completion_state
ffffffff82250862 T __sched_text_end
ffffffffc0001000 t nfs_wait_bit_killable\t[nfs]
";

    fn symbols() -> (tempfile::TempDir, KernelSymbols) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kallsyms");
        std::fs::write(&path, TABLE).unwrap();
        (dir, KernelSymbols::with_table(path))
    }

    /// A vfork parent's stack as bpf_get_stackid takes it inside __schedule.
    const VFORK: [u64; 7] = [
        0xffff_ffff_8100_0123, // tracing code before the scheduler
        0xffff_ffff_8224_7c00, // __schedule
        0xffff_ffff_8224_8b60, // schedule
        0xffff_ffff_8224_99a0, // wait_for_completion_state
        0xffff_ffff_8135_fac3, // kernel_clone
        0xffff_ffff_8136_01f6, // __do_sys_vfork
        0xffff_ffff_8200_0071, // do_syscall_64
    ];

    #[test]
    fn a_kernel_stack_is_named_and_split_at_the_sleep_code() {
        let (_dir, mut k) = symbols();
        let stack = k.stack(&VFORK);
        assert_eq!(
            stack.wait_frames(),
            [
                "wait_for_completion_state",
                "kernel_clone",
                "__do_sys_vfork",
                "do_syscall_64"
            ]
        );
        assert!(stack.frames[1].sleeping && !stack.frames[4].sleeping);
    }

    #[test]
    fn modules_are_named_and_names_are_cached() {
        let (dir, mut k) = symbols();
        let stack = k.stack(&[0xffff_ffff_c000_1010]);
        assert_eq!(stack.frames[0].name, "nfs_wait_bit_killable [nfs]");
        // Cached: the table is not read again.
        std::fs::remove_file(dir.path().join("kallsyms")).unwrap();
        assert_eq!(
            k.stack(&[0xffff_ffff_c000_1010]).frames[0].name,
            "nfs_wait_bit_killable [nfs]"
        );
    }

    #[test]
    fn hidden_or_missing_symbols_leave_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kallsyms");
        std::fs::write(&path, "0000000000000000 T kernel_clone\n").unwrap();
        let mut k = KernelSymbols::with_table(path);
        let stack = k.stack(&[0xffff_ffff_8135_fac3]);
        assert_eq!(stack.frames[0].name, "0xffffffff8135fac3");
        assert_eq!(stack.wait_frames(), ["0xffffffff8135fac3"]);
        let mut none = KernelSymbols::with_table(dir.path().join("absent"));
        assert_eq!(none.stack(&[0x10]).frames[0].name, "0x10");
    }
}
