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

fn step(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("xtask test: {name}");
    body().with_context(|| format!("xtask test: {name} failed"))
}
