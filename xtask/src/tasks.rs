//! `cargo xtask build` and `cargo xtask test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{display_path, is_root, observer_bin, run, target_dir, workspace_root};

fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// Setup, then the release binary; returns the binary's path.
pub fn build() -> Result<PathBuf> {
    setup::run()?;
    // observer-user's build script builds observer-ebpf with aya-build and embeds the object.
    run(cargo().args(["build", "--release", "-p", "observer-user"]))?;
    let bin = observer_bin();
    if !bin.is_file() {
        bail!("the build succeeded but {} is missing", display_path(&bin));
    }
    println!("build: {}", display_path(&bin));
    Ok(bin)
}

pub fn test() -> Result<()> {
    let bin = build()?;
    report_disk("after the release build");

    // The cheap checks first: a formatting slip fails in seconds, not after the e2e tests.
    step("rustfmt", || run(cargo().args(["fmt", "--all", "--check"])))?;

    step("clippy", || {
        run(cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "observer-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;

    step("unit tests", || {
        run(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "observer-ebpf",
            "--exclude",
            "observer-tests",
        ]))
    })?;
    report_disk("after the unit tests");
    // Nothing later reads the debug profile's output; on a CI machine its disk is worth more.
    if on_ci() {
        remove_build_output(&target_dir().join("debug"));
    }

    step("end-to-end tests", || {
        if !is_root() {
            bail!(
                "the end-to-end tests (observer-tests) load eBPF programs into the kernel and need root; \
                 run `cargo xtask test` as root (they are not skipped)"
            );
        }
        // One test at a time: each one observes real processes and measures real wait times,
        // which parallel tests on two cores would distort.
        run(cargo()
            .args([
                "test",
                "--release",
                "-p",
                "observer-tests",
                "--",
                "--test-threads=1",
            ])
            .env("OBSERVER_BIN", &bin))
    })?;
    report_disk("after the end-to-end tests");

    step(
        "bad input (seeded and damaged-file tests, then each fuzz target)",
        fuzz,
    )?;
    report_disk("after fuzzing");

    println!("xtask test: all passed");
    Ok(())
}

/// CI runs set CI (see .ci/run); build output a later step does not need is removed there.
fn on_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn remove_build_output(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => println!(
            "xtask test: removed {} (not needed by later steps)",
            display_path(dir)
        ),
        Err(e) => println!("xtask test: could not remove {}: {e}", display_path(dir)),
    }
}

/// One line on free disk space and the size of the build output, so a CI log shows where the
/// space went if a machine runs short (one run failed with "No space left on device").
fn report_disk(when: &str) {
    let target = target_dir();
    let free = free_bytes(&workspace_root());
    let used = [target.clone(), workspace_root().join("fuzz").join("target")]
        .iter()
        .map(|d| dir_bytes(d))
        .sum::<u64>();
    println!(
        "xtask test: disk {when}: {} free, build output {}",
        free.map_or_else(|| "?".to_string(), gib),
        gib(used)
    );
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn free_bytes(path: &Path) -> Option<u64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and st points to writable memory.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled st.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail * st.f_frsize)
}

/// Bytes of regular files under dir (not following symlinks); 0 when it is missing.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Fuzz targets of `fuzz/` (its own workspace), each for a bounded time. Parsers of input
/// observer does not control must never panic: ELF/Go binaries, /proc text, ring-buffer
/// records, stack bytes, alert lines, recordings. A crash leaves its input in `fuzz/artifacts/<target>/`.
const FUZZ_TARGETS: &[&str] = &[
    "go_binary",
    "proc_text",
    "ring_event",
    "stack_unwind",
    "alert_json",
    "recording",
];
const FUZZ_SECONDS_EACH: u32 = 12;

fn fuzz() -> Result<()> {
    let dir = workspace_root().join("fuzz");
    // Its own target dir, and no eBPF build: the parsers need neither, and sharing the main
    // target dir with AYA_BUILD_SKIP would make the next main build redo the eBPF object.
    let fuzz_cargo = |toolchain: Option<&str>| {
        let mut cmd = Command::new("cargo");
        if let Some(t) = toolchain {
            cmd.arg(t);
        }
        cmd.current_dir(&dir)
            .env("AYA_BUILD_SKIP", "1")
            .env("CARGO_TARGET_DIR", dir.join("target"));
        cmd
    };
    run(fuzz_cargo(None).args(["test", "--", "--test-threads=1"]))?;
    if on_ci() {
        remove_build_output(&dir.join("target").join("debug"));
    }
    for target in FUZZ_TARGETS {
        run(fuzz_cargo(Some("+nightly")).args([
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={FUZZ_SECONDS_EACH}"),
        ]))?;
    }
    Ok(())
}

fn step(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("xtask test: {name}");
    body().with_context(|| format!("xtask test: {name} failed"))
}
