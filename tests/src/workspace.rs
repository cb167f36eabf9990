//! A scratch directory per test, and the C targets compiled into it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// How a C target is compiled. Debian builds without frame pointers; both must give full stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramePointers {
    Omit,
    Keep,
}

impl FramePointers {
    fn flag(self) -> &'static str {
        match self {
            FramePointers::Omit => "-fomit-frame-pointer",
            FramePointers::Keep => "-fno-omit-frame-pointer",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            FramePointers::Omit => "nofp",
            FramePointers::Keep => "fp",
        }
    }
}

/// A scratch directory for one test: compiled targets, alerts, captured output.
pub struct Workspace {
    pub(crate) dir: TempDir,
}

impl Workspace {
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("observer-e2e-{label}-"))
            .tempdir()
            .expect("could not create a temporary directory");
        // Readable by everyone: one test runs observer as an unprivileged user from here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("could not make the temporary directory readable");
        Workspace { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Compiles `targets/<name>.c` like a distribution would (-O1 -g), with or without frame pointers.
    pub fn build_target(&self, name: &str, fp: FramePointers) -> PathBuf {
        let binary = self.path(&format!("{name}-{}", fp.suffix()));
        self.build_target_as(name, &["-O1", fp.flag()], binary)
    }

    /// Compiles `targets/<name>.c` with `flags` (beside `-g -pthread`) into `binary`.
    pub fn build_target_as(&self, name: &str, flags: &[&str], binary: PathBuf) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("targets")
            .join(format!("{name}.c"));
        let out = Command::new("gcc")
            .args(flags)
            .args(["-g", "-pthread", "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .expect("could not run gcc (run `cargo xtask setup`)");
        assert!(
            out.status.success(),
            "gcc failed on {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    }

    /// Compiles `targets/<name>.cpp` with g++ as C++ services ship: `-O2 -g`, no frame pointers.
    pub fn build_cpp_target(&self, name: &str) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("targets")
            .join(format!("{name}.cpp"));
        let binary = self.path(name);
        let out = Command::new("g++")
            .args(["-O2", "-g", "-pthread", "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .expect("could not run g++ (run `cargo xtask setup`)");
        assert!(
            out.status.success(),
            "g++ failed on {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    }
}
