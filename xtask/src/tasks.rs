//! `cargo xtask build` and `cargo xtask test`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{display_path, is_root, observer_bin, run, workspace_root};

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

    step(
        "bad input (seeded and damaged-file tests, then each fuzz target)",
        fuzz,
    )?;

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

    println!("xtask test: all passed");
    Ok(())
}

/// Fuzz targets of `fuzz/` (its own workspace), each for a bounded time. Parsers of input
/// observer does not control must never panic: ELF/Go binaries, /proc text, ring-buffer
/// records, stack bytes, alert lines. A crash leaves its input in `fuzz/artifacts/<target>/`.
const FUZZ_TARGETS: &[&str] = &[
    "go_binary",
    "proc_text",
    "ring_event",
    "stack_unwind",
    "alert_json",
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
