//! Hostile local users and binaries: what an unprivileged user can do to their own program's
//! file must not stop, blind or exhaust observer, which runs as root for the whole host.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use observer_tests::{
    require_root, stack_mentions, str_field, u64_field, wait_until, FramePointers, Observer,
    ObserverCmd, ObserverRun, Target, Value, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `nobody`: owns nothing observer trusts.
const UNPRIVILEGED: u32 = 65534;

fn as_unprivileged() -> Vec<String> {
    vec![
        "setpriv".into(),
        format!("--reuid={UNPRIVILEGED}"),
        format!("--regid={UNPRIVILEGED}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

/// A directory owned by the unprivileged user with a copy of `on_signal` in it, named `name`
/// (its comm), owned and executable by that user.
fn user_program(ws: &Workspace, name: &str) -> PathBuf {
    let home = ws.path("home");
    fs::create_dir_all(&home).expect("mkdir home");
    std::os::unix::fs::chown(&home, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).expect("chown home");
    let program = home.join(name);
    fs::copy(ws.build_target("on_signal", FramePointers::Omit), &program).expect("copy");
    std::os::unix::fs::chown(&program, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).expect("chown");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).expect("chmod");
    program
}

/// Starts `program` as the unprivileged user; returns once it runs the program (not setpriv).
fn spawn_as_user(program: &Path) -> Target {
    let argv = as_unprivileged();
    let mut args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    args.push(program.to_str().expect("utf8 path"));
    let target = Target::spawn(Path::new(&argv[0]), &args);
    let name = program.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(format!(
            "/proc/{}/comm",
            target.pid()
        ))
        .is_ok_and(|c| c.trim_end() == name)),
        "{} did not start",
        program.display()
    );
    target
}

/// What the unprivileged user does: renames a FIFO over the running program's file.
fn plant_fifo_over(program: &Path) {
    let fifo = program.with_extension("fifo");
    let script = format!(
        "mkfifo '{}' && mv -f '{}' '{}'",
        fifo.display(),
        fifo.display(),
        program.display()
    );
    let mut argv = as_unprivileged();
    argv.extend(["sh".into(), "-c".into(), script]);
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .expect("setpriv");
    assert!(
        status.success(),
        "the unprivileged user could not plant the FIFO"
    );
    assert!(
        fs::symlink_metadata(program).is_ok_and(|m| m.file_type().is_fifo()),
        "{} is not a FIFO now",
        program.display()
    );
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0, "kill");
}

/// Complete alert lines written so far (the last line may be half written).
fn alerts_so_far(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn wait_for_alert(
    observer: &Observer,
    alerts: &Path,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut found = None;
    wait_until(TIMEOUT, || {
        found = alerts_so_far(alerts).into_iter().find(&pred);
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no {what} within {TIMEOUT:?} (observer stuck?)\nalerts:\n{}\nobserver stderr:\n{}",
            fs::read_to_string(alerts).unwrap_or_default(),
            observer.stderr_so_far()
        )
    })
}

/// The victim's lock waits are alerted before and after the swap, with symbolized stacks
/// (the one after has code not symbolized before, so its file is read again), a deadlock
/// started afterwards (by `deadlock`, which starts it) is reported, and SIGINT still stops
/// observer.
fn survives_fifo_swap(
    observer: Observer,
    alerts: &Path,
    victim: &Target,
    program: &Path,
    deadlock: impl FnOnce() -> u32,
) {
    let lock_hold_in = |caller: &'static str| {
        move |a: &Value| {
            str_field(a, "kind") == Some("lock_hold")
                && u64_field(a, "pid") == Some(victim.pid().into())
                && stack_mentions(a, "stack", "worker_update")
                && stack_mentions(a, "stack", caller)
        }
    };
    // Long enough for the sidecar to have found the victim.
    thread::sleep(Duration::from_millis(1000));
    signal(victim.pid(), libc::SIGUSR1);
    wait_for_alert(
        &observer,
        alerts,
        "lock_hold alert before the swap",
        lock_hold_in("worker_main"),
    );
    plant_fifo_over(program);
    signal(victim.pid(), libc::SIGUSR1);
    wait_for_alert(
        &observer,
        alerts,
        "lock_hold alert symbolized after the swap",
        lock_hold_in("retry_main"),
    );

    let deadlocked = deadlock();
    wait_for_alert(&observer, alerts, "deadlock alert", |a| {
        str_field(a, "kind") == Some("deadlock") && u64_field(a, "pid") == Some(deadlocked.into())
    });

    signal(observer.pid(), libc::SIGINT);
    let run = observer.wait(Duration::from_secs(10));
    assert!(run.status.success(), "{}", run.report());
}

/// The capabilities deploy/ grants the DaemonSet (no CAP_SYS_ADMIN: `/proc/PID/map_files`
/// cannot be opened, files are reached through `/proc/PID/root`).
const DEPLOY_CAPS: &str =
    "--bounding-set=-all,+bpf,+perfmon,+sys_ptrace,+sys_resource,+dac_read_search";

#[test]
fn fifo_renamed_over_a_watched_binary() {
    fifo_renamed_over_a_watched_binary_as(None);
}

#[test]
fn fifo_renamed_over_a_watched_binary_with_the_deploy_capabilities() {
    fifo_renamed_over_a_watched_binary_as(Some(DEPLOY_CAPS));
}

fn fifo_renamed_over_a_watched_binary_as(bounding_set: Option<&str>) {
    require_root();
    let ws = Workspace::new("hostile-fifo-watch");
    let program = user_program(&ws, "victim");
    let victim = spawn_as_user(&program);
    let alerts = ws.path("alerts.jsonl");
    let mut cmd = ObserverCmd::watch(victim.pid())
        .opt("--stall-after", "1s")
        .alerts(&ws);
    if let Some(set) = bounding_set {
        cmd = cmd.wrapped_in(&["setpriv", set, "--"]);
    }
    let observer = cmd.spawn(&ws);
    assert!(
        wait_until(TIMEOUT, || observer
            .stderr_so_far()
            .contains("watching pid")),
        "observer did not attach: {}",
        observer.stderr_so_far()
    );
    let pid = victim.pid();
    survives_fifo_swap(observer, &alerts, &victim, &program, || {
        // The same process deadlocks next: `watch` sees one process.
        signal(pid, libc::SIGUSR1);
        pid
    });
}

/// `observer watch` of the victim: one lock wait (SIGUSR1) must be alerted with a stack naming
/// `worker_update`, then observer must end cleanly on SIGINT.
fn watch_one_lock_hold(ws: &Workspace, victim: &Target) -> ObserverRun {
    let alerts = ws.path("alerts.jsonl");
    let observer = ObserverCmd::watch(victim.pid())
        .opt("--stall-after", "1s")
        .alerts(ws)
        .spawn(ws);
    assert!(
        wait_until(TIMEOUT, || observer
            .stderr_so_far()
            .contains("watching pid")),
        "observer did not attach: {}",
        observer.stderr_so_far()
    );
    thread::sleep(Duration::from_millis(500));
    signal(victim.pid(), libc::SIGUSR1);
    let wait = wait_for_alert(&observer, &alerts, "lock_hold alert", |a| {
        str_field(a, "kind") == Some("lock_hold")
            && u64_field(a, "pid") == Some(victim.pid().into())
    });
    assert!(stack_mentions(&wait, "stack", "worker_update"), "{wait}");
    signal(observer.pid(), libc::SIGINT);
    let run = observer.wait(Duration::from_secs(10));
    assert!(run.status.success(), "{}", run.report());
    run
}

/// The FIFO is in place before observer ever looks at the program: the lock wait is still
/// alerted (its frames named when the mapped file can be reached through map_files, as root
/// can), and nothing blocks.
#[test]
fn fifo_renamed_over_a_binary_before_observer_attaches() {
    require_root();
    let ws = Workspace::new("hostile-fifo-early");
    let program = user_program(&ws, "victim");
    let victim = spawn_as_user(&program);
    plant_fifo_over(&program);
    watch_one_lock_hold(&ws, &victim);
}

#[test]
fn fifo_renamed_over_a_binary_under_the_sidecar() {
    require_root();
    let ws = Workspace::new("hostile-fifo-sidecar");
    let program = user_program(&ws, "hostile-victim");
    let victim = spawn_as_user(&program);
    let deadlock_bin = ws.path("hostile-dlock");
    fs::copy(
        ws.build_target("deadlock", FramePointers::Omit),
        &deadlock_bin,
    )
    .expect("copy");
    let alerts = ws.path("alerts.jsonl");
    let observer = ObserverCmd::raw(&["sidecar", "--no-metrics"])
        .opt("--comm", "^hostile-(victim|dlock)$")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .spawn(&ws);
    let mut other = None;
    survives_fifo_swap(observer, &alerts, &victim, &program, || {
        // Another process, started after the swap: a stuck sidecar would never see it.
        let t = Target::spawn(&deadlock_bin, &["0"]);
        let pid = t.pid();
        other = Some(t);
        pid
    });
}

/// Rewrites `section` of the ELF file `path` into a zlib stream of its own bytes followed by
/// zeros up to `inflated` bytes, whose compression header (`Elf64_Chdr`) declares `declared`
/// bytes: with `declared < inflated` a decompression bomb of about `inflated / 1000` bytes in
/// the file, else an honest but huge section whose contents still read as before. The new
/// section goes at the end of the file.
fn plant_compressed(path: &Path, section: &str, declared: u64, inflated: u64) {
    const SCRIPT: &str = r#"
import struct, sys, zlib
path, section, declared, inflated = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = bytearray(open(path, "rb").read())
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
def sh(i): return shoff + i * shentsize
stroff, = struct.unpack_from("<Q", data, sh(shstrndx) + 0x18)
def name(i):
    n, = struct.unpack_from("<I", data, sh(i))
    return bytes(data[stroff + n:data.index(b"\0", stroff + n)]).decode()
idx = next(i for i in range(shnum) if name(i) == section)
old_off, old_size = struct.unpack_from("<QQ", data, sh(idx) + 0x18)
z = zlib.compressobj(9)
chunk = bytes(1 << 20)
body = bytearray(z.compress(bytes(data[old_off:old_off + old_size])))
left = inflated - old_size
while left > 0:
    n = min(left, len(chunk))
    body += z.compress(chunk[:n])
    left -= n
body += z.flush()
while len(data) % 8:
    data.append(0)
offset = len(data)
data += struct.pack("<IIQQ", 1, 0, declared, 1) + body
flags, = struct.unpack_from("<Q", data, sh(idx) + 0x08)
struct.pack_into("<Q", data, sh(idx) + 0x08, flags | 0x800)
struct.pack_into("<QQ", data, sh(idx) + 0x18, offset, 24 + len(body))
open(path, "wb").write(data)
"#;
    let status = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(path)
        .arg(section)
        .arg(declared.to_string())
        .arg(inflated.to_string())
        .status()
        .expect("python3");
    assert!(status.success(), "could not plant the bomb");
}

/// A 2 MB binary whose `.debug_info` declares 4 KiB but inflates to 2 GiB: observer still
/// alerts on its lock waits (named from the symbol table) and stays far below the 512 MiB
/// the deploy/ DaemonSet allows it.
#[test]
fn decompression_bomb_in_debug_info() {
    require_root();
    let ws = Workspace::new("hostile-bomb");
    let binary = ws.build_target("lock_hold", FramePointers::Omit);
    plant_compressed(&binary, ".debug_info", 4096, 2 << 30);
    let size = fs::metadata(&binary).expect("bomb").len();
    assert!(size < 4 << 20, "the bomb is {size} bytes");
    let (run, peak_kib) = ObserverCmd::run()
        .alerts(&ws)
        .command(&binary, &["2"])
        .spawn(&ws)
        .wait_with_peak_rss(Duration::from_secs(120));
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    let waits = run.of_kind("lock_hold");
    assert!(
        waits
            .iter()
            .any(|a| stack_mentions(a, "stack", "worker_update")),
        "no lock_hold named from the symbol table\n{}",
        run.report()
    );
    assert!(
        run.stderr.contains("symbol table only") && run.stderr.contains("decompression bomb"),
        "observer did not say why the DWARF was skipped\n{}",
        run.stderr
    );
    eprintln!("observer peak RSS: {} MiB\n{}", peak_kib / 1024, run.stderr);
    assert!(
        peak_kib < 512 * 1024,
        "observer peaked at {} MiB",
        peak_kib / 1024
    );
}

/// The user's program names a companion debug file (`.gnu_debuglink`) next to it, and that
/// file is a FIFO: symbolizers look such files up by path, so observer must not follow the
/// link for a file others can change. The stack is named from the symbol table instead.
#[test]
fn fifo_as_the_debug_link_of_a_user_binary() {
    require_root();
    let ws = Workspace::new("hostile-debuglink");
    let program = user_program(&ws, "victim");
    let debug = program.with_extension("debug");
    fs::write(&debug, b"not debug info").expect("write");
    let status = Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&program)
        .status()
        .expect("objcopy");
    assert!(status.success(), "objcopy --add-gnu-debuglink failed");
    fs::remove_file(&debug).expect("rm");
    let c = std::ffi::CString::new(debug.to_str().expect("utf8")).expect("cstr");
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
    std::os::unix::fs::chown(&debug, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).expect("chown");

    let victim = spawn_as_user(&program);
    let run = watch_one_lock_hold(&ws, &victim);
    assert!(
        run.stderr.contains("symbol table only") && run.stderr.contains(".gnu_debuglink"),
        "observer did not say why it skipped the debug link\n{}",
        run.stderr
    );
}

/// Honest files add up like a bomb: four programs whose `.debug_str` declares and inflates
/// to 120 MiB each (its strings, then zeros: 120 KiB in the file), with DWARF that stays
/// valid, so a symbolizer keeps it. The sidecar inflates what fits its budget, names the
/// others from their symbol tables, alerts on all four and stays below 512 MiB.
#[test]
fn many_big_compressed_binaries_share_one_budget() {
    require_root();
    let ws = Workspace::new("hostile-budget");
    let built = ws.build_target("lock_hold", FramePointers::Omit);
    let programs: Vec<PathBuf> = (0..4)
        .map(|i| {
            let copy = ws.path(&format!("hbudget{i}"));
            fs::copy(&built, &copy).expect("copy");
            // Without a build id each copy is a file of its own to symbolize, not a cache hit.
            let status = Command::new("objcopy")
                .args(["--remove-section", ".note.gnu.build-id"])
                .arg(&copy)
                .status()
                .expect("objcopy");
            assert!(status.success(), "objcopy --remove-section failed");
            plant_compressed(&copy, ".debug_str", 120 << 20, 120 << 20);
            copy
        })
        .collect();
    let alerts = ws.path("alerts.jsonl");
    let observer = ObserverCmd::raw(&["sidecar", "--no-metrics"])
        .opt("--comm", "^hbudget[0-9]$")
        .alerts(&ws)
        .spawn(&ws);
    thread::sleep(Duration::from_millis(1500));
    let targets: Vec<Target> = programs.iter().map(|p| Target::spawn(p, &["4"])).collect();
    for t in &targets {
        wait_for_alert(&observer, &alerts, "lock_hold alert", |a| {
            str_field(a, "kind") == Some("lock_hold") && u64_field(a, "pid") == Some(t.pid().into())
        });
    }
    signal(observer.pid(), libc::SIGINT);
    let (run, peak_kib) = observer.wait_with_peak_rss(Duration::from_secs(30));
    assert!(run.status.success(), "{}", run.report());
    eprintln!("observer peak RSS: {} MiB\n{}", peak_kib / 1024, run.stderr);
    assert!(
        peak_kib < 512 * 1024,
        "observer peaked at {} MiB",
        peak_kib / 1024
    );
    assert!(
        run.stderr.contains("files in use already hold"),
        "no file was refused for the shared budget\n{}",
        run.stderr
    );
}
