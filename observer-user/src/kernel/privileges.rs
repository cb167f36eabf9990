//! Refuse early, with the capability names, when observer cannot load its probes.

use thiserror::Error;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The `setcap` line that grants everything observer uses (see [`PrivilegeError::Missing`]).
pub const SETCAP_ADVICE: &str =
    "setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search,cap_sys_admin+ep observer";

#[derive(Debug, Error)]
pub enum PrivilegeError {
    // Why each one: BPF + PERFMON load the programs and attach the tracepoints; SYS_PTRACE
    // reads other users' /proc/PID/{maps,exe,task} and memory; DAC_READ_SEARCH reads tracefs
    // (root's 0700 directory: the tracepoint ids and record layouts) and binaries in other
    // users' private directories; SYS_ADMIN creates uprobes (Linux >= 6.16 refuses them to
    // PERFMON alone), which only the goroutine probes need, so its absence is a warning.
    #[error(
        "observer needs root, or the capabilities CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE + \
         CAP_DAC_READ_SEARCH, and CAP_SYS_ADMIN for the goroutine probes of Go programs \
         (missing: {missing}); run it with sudo or grant them, e.g. `{SETCAP_ADVICE}`"
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
    if !has(CAP_DAC_READ_SEARCH) {
        missing.push("CAP_DAC_READ_SEARCH");
    }
    missing
}

/// What observer can do without, but the user should know it lacks.
pub fn weaker_without(caps: u64) -> Option<&'static str> {
    (caps & (1u64 << CAP_SYS_ADMIN) == 0).then_some(
        "CAP_SYS_ADMIN is missing: Go programs will have no goroutine-level view (since Linux \
         6.16 creating uprobes takes it); grant it, or run as root",
    )
}

pub fn check() -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let caps = effective_caps(&status).unwrap_or(0);
    let missing = missing_caps(caps);
    if missing.is_empty() {
        if let Some(warning) = weaker_without(caps) {
            log::info!("{warning}");
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
    fn unprivileged_misses_all_four() {
        assert_eq!(
            missing_caps(0),
            vec![
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH"
            ]
        );
    }

    /// The three the old message named leave tracefs unreadable: the probes cannot load.
    #[test]
    fn dac_read_search_is_required() {
        let three = 1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYS_PTRACE;
        assert_eq!(missing_caps(three), vec!["CAP_DAC_READ_SEARCH"]);
    }

    #[test]
    fn sys_admin_is_only_for_the_goroutine_probes() {
        let four = 1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYS_PTRACE | 1 << CAP_DAC_READ_SEARCH;
        assert!(missing_caps(four).is_empty());
        assert!(weaker_without(four).is_some());
        assert!(weaker_without(four | 1 << CAP_SYS_ADMIN).is_none());
    }

    #[test]
    fn the_advice_names_every_capability_checked() {
        for cap in [
            "cap_bpf",
            "cap_perfmon",
            "cap_sys_ptrace",
            "cap_dac_read_search",
            "cap_sys_admin",
        ] {
            assert!(SETCAP_ADVICE.contains(cap), "{cap} missing from the advice");
        }
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_and_perfmon() {
        assert_eq!(
            missing_caps(1 << CAP_SYS_ADMIN),
            vec!["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]
        );
    }
}
