//! The tools the bench drives (perf, bpftrace, bpftool) and the bench programs it builds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::loud;
use crate::util::{output_if_ok, run, target_dir, workspace_root};

pub(super) struct Tools {
    pub(super) observer: PathBuf,
    pub(super) perf: bool,
    pub(super) bpftrace: bool,
    pub(super) bpftool: bool,
    pub(super) mutex_contend: PathBuf,
    pub(super) rwlock_contend: PathBuf,
    /// None when rustc failed (its row is then n/a).
    pub(super) rust_mutex_contend: Option<PathBuf>,
    pub(super) many_threads: PathBuf,
    pub(super) uprobe_loop: PathBuf,
    pub(super) goparks: Option<PathBuf>,
    /// A busy net/http service with its load generator (tests/goprogs/patterns/busyhttp.go).
    pub(super) busyhttp: Option<PathBuf>,
    pub(super) noop_bt: PathBuf,
    pub(super) futexctn_bt: PathBuf,
    pub(super) notes: Vec<String>,
}

impl Tools {
    pub(super) fn prepare(observer: PathBuf) -> Result<Tools> {
        let mut notes = Vec::new();
        let src = workspace_root().join("bench");
        let out = target_dir().join("bench");
        fs::create_dir_all(&out).with_context(|| format!("could not create {}", out.display()))?;

        let perf = output_if_ok(Command::new("perf").arg("--version")).is_some();
        if !perf {
            notes.push(
                "perf is missing (apt package linux-perf): the perf bench rows are n/a".into(),
            );
        }
        let bpftrace = output_if_ok(Command::new("bpftrace").arg("--version")).is_some();
        if !bpftrace {
            notes.push("bpftrace is missing: the bpftrace columns are n/a".into());
        }
        let bpftool = ensure_bpftool();
        if !bpftool {
            notes.push(
                "bpftool is missing and could not be installed: programs are named by id".into(),
            );
        }

        let mutex_contend = out.join("mutex_contend");
        let rwlock_contend = out.join("rwlock_contend");
        let many_threads = out.join("many_threads");
        let uprobe_loop = out.join("uprobe_loop");
        for (bin, source) in [
            (&mutex_contend, "mutex_contend.c"),
            (&rwlock_contend, "rwlock_contend.c"),
            (&many_threads, "many_threads.c"),
            (&uprobe_loop, "uprobe_loop.c"),
        ] {
            // -O2 -g without frame pointers: how a distribution builds C.
            run(Command::new("gcc")
                .args(["-O2", "-g", "-pthread", "-Wall", "-o"])
                .arg(bin)
                .arg(src.join(source)))?;
        }
        // Built as people ship Rust: optimized, std's own futex locks, no dependencies.
        let rust_mutex_contend = out.join("rust_mutex_contend");
        let rust_mutex_contend = match run(Command::new("rustc")
            .args(["-O", "--edition", "2021", "-o"])
            .arg(&rust_mutex_contend)
            .arg(src.join("rust_mutex_contend.rs")))
        {
            Ok(()) => Some(rust_mutex_contend),
            Err(e) => {
                notes.push(format!(
                    "the Rust mutex benchmark did not build ({e:#}): its row is n/a"
                ));
                None
            }
        };
        let goparks = out.join("goparks");
        let built = run(Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&goparks)
            .arg("main.go")
            .current_dir(src.join("goparks"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0"));
        let goparks = match built {
            Ok(()) => Some(goparks),
            Err(e) => {
                notes.push(format!(
                    "the Go benchmark did not build ({e:#}): its rows are n/a"
                ));
                None
            }
        };
        let busyhttp = out.join("busyhttp");
        let built = run(Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&busyhttp)
            .arg("busyhttp.go")
            .current_dir(src.join("../tests/goprogs/patterns"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "off")
            .env("CGO_ENABLED", "0"));
        let busyhttp = match built {
            Ok(()) => Some(busyhttp),
            Err(e) => {
                notes.push(format!(
                    "the busy HTTP service did not build ({e:#}): its row is n/a"
                ));
                None
            }
        };
        for n in &notes {
            loud(n);
        }
        Ok(Tools {
            observer,
            perf,
            bpftrace,
            bpftool,
            mutex_contend,
            rwlock_contend,
            rust_mutex_contend,
            many_threads,
            uprobe_loop,
            goparks,
            busyhttp,
            noop_bt: src.join("futex_noop.bt"),
            futexctn_bt: src.join("futexctn.bt"),
            notes,
        })
    }
}

/// bpftool names the programs in the per-program table; it is a bench-only need, so it is
/// installed here rather than by `cargo xtask setup`.
fn ensure_bpftool() -> bool {
    if output_if_ok(Command::new("bpftool").arg("version")).is_some() {
        return true;
    }
    println!("bench: installing bpftool");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "bpftool"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    output_if_ok(Command::new("bpftool").arg("version")).is_some()
}

/// perf by absolute path: `bpftrace -c` refuses a bare name that PATH resolves twice (/usr/bin
/// and /bin are the same directory on a merged-/usr Debian).
pub(super) fn perf_argv(args: &[&str]) -> Vec<String> {
    let perf = find_in_path("perf").unwrap_or_else(|| PathBuf::from("perf"));
    let mut argv = vec![perf.display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}
