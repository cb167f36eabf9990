//! The Rust lock targets (`rustprogs/locks`), built once per test run with cargo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `rustprogs/locks` built as people ship Rust (release, no debug info), into its own target
/// directory under the workspace's `target/`: it is its own cargo workspace (the main one
/// excludes it) and fetches parking_lot from crates.io. Built once per test binary; later calls
/// return the same path.
pub fn rust_locks() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_rust_locks).clone()
}

fn build_rust_locks() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("rustprogs/locks/Cargo.toml");
    let target_dir = root.join("../target/rustprogs");
    // The cargo that runs the tests, when there is one; its toolchain built observer too.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the workspace under test must not change how the target is built.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", cargo.to_string_lossy()));
    assert!(
        out.status.success(),
        "cargo build failed on {}:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = target_dir.join("release/locks");
    assert!(
        binary.is_file(),
        "cargo built {} but {} is missing",
        manifest.display(),
        binary.display()
    );
    binary
}
