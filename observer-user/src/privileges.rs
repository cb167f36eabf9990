//! Refuse early, with the capability names, when observer cannot load its probes.

use thiserror::Error;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error(
        "observer needs root, or the capabilities CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE \
         (missing: {missing}); run it with sudo or grant them, e.g. \
         `setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep observer`"
    )]
    Missing { missing: String },
    #[error("cannot read /proc/self/status to check capabilities: {0}")]
    Status(#[from] std::io::Error),
}

/// Effective capability set from `/proc/self/status` text.
pub fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Names of the needed capabilities absent from `caps` (CAP_SYS_ADMIN stands in for BPF and
/// PERFMON, as on kernels before 5.8).
pub fn missing_caps(caps: u64) -> Vec<&'static str> {
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !admin {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !admin {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    missing
}

/// What observer can do without, but the user should know it lacks: without
/// CAP_DAC_READ_SEARCH, binaries its user may not read (mode 0700 directories of other users)
/// cannot be symbolized or unwound, and their processes' stacks come out empty.
pub fn weaker_without(caps: u64) -> Option<&'static str> {
    (caps & (1u64 << CAP_DAC_READ_SEARCH) == 0).then_some(
        "CAP_DAC_READ_SEARCH is missing: programs whose files this user may not read will have          no symbolized stacks (grant it, or run as root)",
    )
}

pub fn check() -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let caps = effective_caps(&status).unwrap_or(0);
    let missing = missing_caps(caps);
    if missing.is_empty() {
        if let Some(warning) = weaker_without(caps) {
            crate::say!("observer: warning: {warning}");
        }
        Ok(())
    } else {
        Err(PrivilegeError::Missing {
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_everything() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(
            missing_caps(effective_caps(status).unwrap()),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn unprivileged_misses_all_three() {
        assert_eq!(
            missing_caps(0),
            vec!["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"]
        );
    }

    #[test]
    fn dac_read_search_is_a_warning() {
        assert!(weaker_without(0x1ff_ffff_ffff).is_none());
        assert!(weaker_without(1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYS_PTRACE).is_some());
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon() {
        assert_eq!(missing_caps(1 << CAP_SYS_ADMIN), vec!["CAP_SYS_PTRACE"]);
    }
}
