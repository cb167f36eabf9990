//! Names for stripped binaries: a binary stripped here, its debug file placed where
//! distributions put it (`/usr/lib/debug/.build-id/xx/rest.debug`), and the hint observer gives
//! once when there is none.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use observer_tests::{
    frames, require_root, stack_mentions, FramePointers, ObserverCmd, ObserverRun, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);
// Any function of the target works: its name exists only in the symbol table and debug info.
const FUNCTION: &str = "worker_update";
const HINT: &str = "has no symbols";

fn run_tool(program: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The GNU build id of `binary`, in lowercase hex (from `readelf -n`).
fn build_id(binary: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(binary)
        .output()
        .expect("readelf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build id in {}:\n{text}", binary.display()))
        .trim()
        .to_string()
}

/// Removes the placed debug file (and the directory it created) however the test ends.
struct PlacedDebugFile {
    path: PathBuf,
    created_dir: Option<PathBuf>,
}

impl PlacedDebugFile {
    /// Copies `debug` to `/usr/lib/debug/.build-id/xx/rest.debug`, root-owned, mode 0644.
    fn place(debug: &Path, build_id: &str) -> Self {
        let dir = Path::new("/usr/lib/debug/.build-id").join(&build_id[..2]);
        let created_dir = (!dir.exists()).then(|| dir.clone());
        fs::create_dir_all(&dir).expect("create the .build-id directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
        let path = dir.join(format!("{}.debug", &build_id[2..]));
        let guard = PlacedDebugFile { path, created_dir };
        fs::copy(debug, &guard.path).expect("place the debug file");
        fs::set_permissions(&guard.path, fs::Permissions::from_mode(0o644)).expect("chmod");
        guard
    }
}

impl Drop for PlacedDebugFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        if let Some(dir) = &self.created_dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn observe(ws: &Workspace, binary: &Path) -> ObserverRun {
    let run = ObserverCmd::run()
        .opt("--threshold", "50ms")
        .alerts(ws)
        .command(binary, &["3"])
        .run_to_end(ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    run
}

fn worker_waits(run: &ObserverRun) -> Vec<&observer_tests::Value> {
    let waits: Vec<_> = run
        .of_kind("lock_hold")
        .into_iter()
        .filter(|a| a["comm"] == "worker")
        .collect();
    assert!(
        !waits.is_empty(),
        "no lock_hold of worker\n{}",
        run.report()
    );
    waits
}

/// lock_hold.c built with debug information, its debug file split off with `objcopy
/// --only-keep-debug`, the binary stripped with `strip --strip-all` (no symbols, no debug link).
/// Without the debug file the worker's lock-wait stack cannot name worker_update and
/// observer says once which binary lacks symbols and where its debug file would go; with it
/// placed at `/usr/lib/debug/.build-id/xx/rest.debug` the stack names the function.
#[test]
fn stripped_binary_is_named_from_its_debug_file_in_usr_lib_debug_build_id() {
    require_root();
    let ws = Workspace::new("debuginfo");
    let binary = ws.build_target("lock_hold", FramePointers::Omit);
    let debug = ws.path("lock_hold.debug");
    run_tool(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            binary.as_os_str(),
            debug.as_os_str(),
        ],
    );
    run_tool("strip", &["--strip-all".as_ref(), binary.as_os_str()]);
    let id = build_id(&binary);
    let place = format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]);
    assert!(
        !Path::new(&place).exists(),
        "{place} exists before the test placed it"
    );

    // Nothing names the code: no name, and one hint naming the binary and the place.
    let run = observe(&ws, &binary);
    for wait in worker_waits(&run) {
        assert!(
            !stack_mentions(wait, "stack", FUNCTION),
            "named without symbols? {:?}",
            frames(wait, "stack")
        );
    }
    let hints: Vec<&str> = run.stderr.lines().filter(|l| l.contains(HINT)).collect();
    assert_eq!(
        hints.len(),
        1,
        "one hint for the one stripped binary\n{}",
        run.report()
    );
    assert!(
        hints[0].contains(binary.to_str().unwrap()) && hints[0].contains(&place),
        "{}",
        hints[0]
    );

    // The debug file where a -dbgsym package puts it: the function is named, no hint.
    let _placed = PlacedDebugFile::place(&debug, &id);
    let run = observe(&ws, &binary);
    for wait in worker_waits(&run) {
        assert!(
            stack_mentions(wait, "stack", FUNCTION),
            "not named from {place}: {:?}\n{}",
            frames(wait, "stack"),
            run.report()
        );
    }
    assert!(!run.stderr.contains(HINT), "{}", run.report());

    // The same file writable by others could have been planted by any local user: not read.
    fs::set_permissions(&_placed.path, fs::Permissions::from_mode(0o666)).expect("chmod 0666");
    let run = observe(&ws, &binary);
    for wait in worker_waits(&run) {
        assert!(
            !stack_mentions(wait, "stack", FUNCTION),
            "read a debug file others can write: {:?}",
            frames(wait, "stack")
        );
    }
}
