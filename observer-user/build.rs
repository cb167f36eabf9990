//! Builds the eBPF programs (observer-ebpf) and leaves the object in OUT_DIR for
//! `include_bytes_aligned!`. With AYA_BUILD_SKIP=1 (unit tests of pure logic, clippy on a machine
//! without the eBPF toolchain) an empty placeholder is written and loading fails at run time.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("../observer-ebpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(out_dir.join("observer"), [])?;
    }
    println!("cargo:rerun-if-changed=../observer-common/src");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "observer-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
