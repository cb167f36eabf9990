//! Cgroup v2 directories shaped like container runtimes' (tests of container identity).

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wait_until;

/// The mounted cgroup v2 hierarchy: the unified one of a hybrid system, or the only one.
pub fn cgroup2_root() -> PathBuf {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").is_file())
        .unwrap_or_else(|| panic!("no cgroup v2 hierarchy mounted (see `mount | grep cgroup`)"))
}

/// Cgroup directories made by the test, removed when dropped (also when the test fails): the
/// processes still in them are moved to the root first, then the directories go, innermost first.
pub struct Cgroups {
    root: PathBuf,
    made: Vec<PathBuf>,
}

impl Cgroups {
    pub fn new() -> Self {
        Cgroups {
            root: cgroup2_root(),
            made: Vec::new(),
        }
    }

    /// Makes `rel` (and the missing directories above it) and moves process `pid` in.
    pub fn put(&mut self, rel: &str, pid: u32) {
        let mut dir = self.root.clone();
        for part in rel.split('/') {
            dir.push(part);
            if !dir.exists() {
                fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("could not create {}: {e}", dir.display()));
                self.made.push(dir.clone());
            }
        }
        fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("could not move pid {pid} into {}: {e}", dir.display()));
        let seen = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            seen.lines().any(|l| l == format!("0::/{rel}")),
            "pid {pid} is not in /{rel}:\n{seen}"
        );
    }
}

impl Default for Cgroups {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = fs::write(self.root.join("cgroup.procs"), pid);
            }
            // A process just killed leaves its cgroup a moment later.
            let gone = wait_until(Duration::from_secs(5), || {
                fs::remove_dir(dir).is_ok() || !dir.exists()
            });
            if !gone {
                eprintln!("could not remove {}", dir.display());
            }
        }
    }
}

/// A container id no real container has: 64 hex digits from the clock, the pid and `salt`.
pub fn fake_id(salt: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let pid = u64::from(std::process::id());
    // The salt leads, so that ids made in the same instant differ in their first digits (the
    // ones a --container prefix gives).
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        salt.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        nanos,
        pid,
        nanos ^ salt
    )
}
