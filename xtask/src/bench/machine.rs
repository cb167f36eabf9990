//! Facts about the machine and the run that the report states next to the figures.

use std::fs;
use std::process::Command;
use std::thread;

use super::tools::Tools;
use crate::util::{output_if_ok, workspace_root};

pub(super) struct MachineFacts {
    pub(super) kernel: String,
    pub(super) cores: usize,
    pub(super) cpu_model: String,
    pub(super) mem_gib: Option<f64>,
    pub(super) os: String,
    pub(super) versions: Vec<(String, String)>,
    pub(super) commit: String,
    pub(super) date: String,
    pub(super) start_load: String,
    pub(super) warnings: Vec<String>,
}

impl MachineFacts {
    pub(super) fn collect(tools: &Tools) -> MachineFacts {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let mem_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| kib / 1024.0 / 1024.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into());
        let first_line = |cmd: &mut Command| {
            output_if_ok(cmd)
                .and_then(|o| {
                    o.lines()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.trim().to_string())
                })
                .unwrap_or_else(|| "n/a".into())
        };
        let mut versions = vec![
            (
                "perf".to_string(),
                first_line(Command::new("perf").arg("--version")),
            ),
            (
                "bpftrace".to_string(),
                first_line(Command::new("bpftrace").arg("--version")),
            ),
            (
                "go".to_string(),
                first_line(Command::new("go").arg("version")),
            ),
            (
                "gcc".to_string(),
                first_line(Command::new("gcc").arg("--version")),
            ),
        ];
        if tools.bpftool {
            versions.push((
                "bpftool".into(),
                first_line(Command::new("bpftool").arg("version")),
            ));
        }
        let git = |args: &[&str]| {
            output_if_ok(Command::new("git").args(args).current_dir(workspace_root()))
        };
        let commit = match git(&["rev-parse", "--short", "HEAD"]) {
            Some(c) => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .map(|s| !s.trim().is_empty())
                    .unwrap_or(false);
                format!(
                    "{}{}",
                    c.trim(),
                    if dirty {
                        " (with uncommitted changes)"
                    } else {
                        ""
                    }
                )
            }
            None => "unknown".into(),
        };
        MachineFacts {
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cores: thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu_model,
            mem_gib,
            os,
            versions,
            commit,
            date: first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            start_load: load_average(),
            warnings: other_tracers(),
        }
    }
}

pub(super) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "n/a".into())
}

/// Other observers or bpftrace instances distort every figure (their programs run on the same
/// scheduler events): say so loudly rather than publish numbers that quietly include them.
fn other_tracers() -> Vec<String> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            (pid != me && matches!(comm, "observer" | "bpftrace" | "perf"))
                .then(|| format!("{comm} (pid {pid})"))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "other tracing processes were running when the bench started, the figures include their cost: {}",
            found.join(", ")
        )]
    }
}
