//! What a local user can plant or type around observer's outputs, arguments and stderr:
//! none of it may block observer, redirect or leak what it writes, kill it, or lose data.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observer_tests::{
    observer_bin, read_alerts, require_root, str_field, FramePointers, ObserverCmd, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Refusals happen before anything is attached: well under this.
const QUICK: Duration = Duration::from_secs(10);
/// `nobody`: the "other local user" of these tests.
const OTHER_UID: u32 = 65534;

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
}

fn give_to_other_user(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; lchown changes a link itself, not its target.
    assert_eq!(
        unsafe { libc::lchown(c.as_ptr(), OTHER_UID, OTHER_UID) },
        0,
        "lchown"
    );
}

fn true_bin() -> std::path::PathBuf {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .expect("true(1) is installed")
}

/// A FIFO at the --alerts path blocked observer in open() forever (and `run` never started its
/// command); with a reader attached, that reader received every alert.
#[test]
fn a_fifo_at_an_output_path_is_refused_at_once() {
    require_root();
    let ws = Workspace::new("fifo");
    let fifo = ws.path("alerts.jsonl");
    mkfifo(&fifo);
    let started = Instant::now();
    let run = ObserverCmd::run()
        .opt("--alerts", fifo.to_str().unwrap())
        .command(&true_bin(), &[] as &[&str])
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert!(
        run.stderr.contains(fifo.to_str().unwrap()) && run.stderr.contains("FIFO"),
        "the refusal names the path and why\n{}",
        run.report()
    );
    assert!(started.elapsed() < QUICK);

    // A reader attached (the attacker's `cat`): the open succeeds, fstat refuses it, nothing
    // is written into the FIFO.
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO for reading");
    let run = ObserverCmd::run()
        .opt("--alerts", fifo.to_str().unwrap())
        .command(&true_bin(), &[] as &[&str])
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert!(run.stderr.contains("is a FIFO"), "{}", run.report());
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
    assert!(
        got.is_empty(),
        "the FIFO's reader received {} bytes",
        got.len()
    );
}

/// A regular file another user planted at the output path was reused in place (truncated and
/// written: the planter could read every alert); a parent directory that is another user's
/// symlink was followed.
#[test]
fn files_and_parent_links_of_other_users_are_refused() {
    require_root();
    let ws = Workspace::new("planted");
    let planted = ws.path("alerts.jsonl");
    fs::write(&planted, "theirs\n").unwrap();
    give_to_other_user(&planted);
    let run = ObserverCmd::run()
        .opt("--alerts", planted.to_str().unwrap())
        .command(&true_bin(), &[] as &[&str])
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("belongs to uid 65534"),
        "{}",
        run.report()
    );
    assert_eq!(fs::read_to_string(&planted).unwrap(), "theirs\n");

    let real = ws.path("real");
    fs::create_dir(&real).unwrap();
    let link = ws.path("shared");
    symlink(&real, &link).unwrap();
    give_to_other_user(&link);
    let folded = link.join("blocked.folded");
    let run = ObserverCmd::run()
        .opt("--folded", folded.to_str().unwrap())
        .command(&true_bin(), &[] as &[&str])
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("symbolic link owned by uid 65534"),
        "{}",
        run.report()
    );
    assert!(!real.join("blocked.folded").exists());
}

/// `--svg` in a directory that does not exist was found out after the whole run; the command
/// never runs now.
#[test]
fn a_profile_destination_typo_fails_before_the_command_runs() {
    require_root();
    let ws = Workspace::new("typo");
    let marker = ws.path("ran");
    let svg = ws.path("no-such-dir/blocked.svg");
    let run = ObserverCmd::run()
        .opt("--svg", svg.to_str().unwrap())
        .command(
            Path::new("/bin/sh"),
            &["-c", &format!("touch {}", marker.display())],
        )
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert!(
        run.stderr.contains(svg.to_str().unwrap())
            && run.stderr.contains("\"no-such-dir\"")
            && run.stderr.contains("No such file or directory"),
        "{}",
        run.report()
    );
    assert!(
        !marker.exists(),
        "the command ran although an output cannot be written"
    );

    let out = ws.path("no-such-dir/report.txt");
    let run = ObserverCmd::raw(&["report", "/nonexistent.rec", "-o", out.to_str().unwrap()])
        .run_to_end(&ws, QUICK);
    assert!(
        run.exit_code() == Some(2) && run.stderr.contains(out.to_str().unwrap()),
        "report -o is checked before the recording is read\n{}",
        run.report()
    );
}

/// `--cgroup /nonexistent` was accepted: a sidecar that watched nothing, forever, silently.
#[test]
fn a_cgroup_that_does_not_exist_is_refused() {
    require_root();
    let ws = Workspace::new("cgroup");
    let run = ObserverCmd::raw(&[
        "sidecar",
        "--no-metrics",
        "--cgroup",
        "/nonexistent-observer-test",
    ])
    .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert!(
        run.stderr
            .contains("--cgroup /nonexistent-observer-test: no such cgroup"),
        "{}",
        run.report()
    );
}

/// `--duration 18446744073709551615s` panicked (exit 101) once the probes were loaded.
#[test]
fn a_duration_past_the_bound_is_refused() {
    let ws = Workspace::new("hugedur");
    let run = ObserverCmd::watch(std::process::id())
        .opt("--duration", "18446744073709551615s")
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("too large (at most 8760h"),
        "{}",
        run.report()
    );
}

/// stderr a pipe whose reader has gone (`observer ... 2>&1 | head -0`): the first message
/// panicked observer (exit 101). Now stderr is lost, the alerts file is written whole and
/// `run` still exits with the command's status. With stderr closed (`2>&-`), no message lands
/// in an output file that took descriptor 2.
#[test]
fn a_lost_stderr_does_not_stop_observer() {
    require_root();
    let ws = Workspace::new("nostderr");
    let target = ws.build_target("lock_hold", FramePointers::Omit);
    let alerts = ws.path("alerts.jsonl");

    let mut fds = [0; 2];
    // SAFETY: pipe fills two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: closing our read end: every write to the pipe now fails with EPIPE.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is ours; Stdio takes it over.
    let broken = unsafe { Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1])) };
    let status = run_with_timeout(
        Command::new(observer_bin())
            .args(["run", "--alerts", alerts.to_str().unwrap(), "--"])
            .arg(&target)
            .arg("2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(broken),
    );
    assert_eq!(status.code(), Some(0), "observer died: {status:?}");
    let got = read_alerts(&alerts);
    assert!(
        got.iter()
            .any(|a| str_field(a, "kind") == Some("lock_hold")),
        "alerts lost with stderr: {got:?}"
    );

    fs::remove_file(&alerts).unwrap();
    let status = run_with_timeout(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "exec {} run --alerts {} -- {} 2 2>&-",
                observer_bin().display(),
                alerts.display(),
                target.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    assert_eq!(status.code(), Some(0), "observer died: {status:?}");
    // Every line parses as an alert: no message meant for stderr went into the file.
    let got = read_alerts(&alerts);
    assert!(
        got.iter()
            .any(|a| str_field(a, "kind") == Some("lock_hold")),
        "{got:?}"
    );
}

use std::os::fd::FromRawFd;

fn run_with_timeout(cmd: &mut Command) -> std::process::ExitStatus {
    let mut child = cmd.process_group(0).spawn().expect("start observer");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child's process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("observer did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts a tmpfs when the test ends, also when it fails.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// On a full disk, the alert lines vanished from stderr too, the summary was skipped, the
/// error named no file and `run` exited 2 instead of the command's status.
#[test]
fn a_full_disk_loses_only_what_goes_to_it() {
    require_root();
    let ws = Workspace::new("fulldisk");
    let target = ws.build_target("lock_hold", FramePointers::Omit);
    let full = ws.path("full");
    fs::create_dir(&full).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&full)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "mount -t tmpfs failed");
    let _mount = Mount(full.clone());
    // Fill it up.
    let mut filler = fs::File::create(full.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    drop(filler);

    let alerts = full.join("alerts.jsonl");
    let folded = ws.path("blocked.folded");
    let run = ObserverCmd::run()
        .opt("--alerts", alerts.to_str().unwrap())
        .opt("--folded", folded.to_str().unwrap())
        .command(&target, &["3"])
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(
        run.exit_code(),
        Some(0),
        "the command's status\n{}",
        run.report()
    );
    assert!(
        run.stderr.contains("observer: lock_hold"),
        "alert lines still on stderr\n{}",
        run.report()
    );
    assert!(
        run.stderr.contains(&format!(
            "cannot write alerts to {}: No space left on device",
            alerts.display()
        )),
        "the error names the file\n{}",
        run.report()
    );
    assert!(
        run.stderr.contains("observer summary for"),
        "{}",
        run.report()
    );
    assert!(
        run.stderr
            .contains("exiting with it although outputs failed"),
        "{}",
        run.report()
    );
    let folded_text = fs::read_to_string(&folded).unwrap_or_default();
    assert!(
        folded_text.contains("worker_update"),
        "the other outputs are written: {folded_text:?}"
    );
}

/// A process name with an OSC sequence (retitles the admin's terminal) and a newline (splits
/// a journal line) reached stderr raw.
#[test]
fn names_from_targets_are_escaped_on_stderr() {
    require_root();
    let ws = Workspace::new("escape");
    let built = ws.build_target("exit_code", FramePointers::Omit);
    // The kernel takes the process name (comm) from the file name, control characters and all.
    let evil = ws.path("e\u{1b}]0;pw\u{7}\nz");
    fs::copy(&built, &evil).unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
    let run = ObserverCmd::run()
        .opt("--alerts", ws.path("alerts.jsonl").to_str().unwrap())
        .command(&evil, &[] as &[&str])
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(3), "{}", run.report());
    assert!(
        !run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{7}'),
        "raw control characters on stderr:\n{:?}",
        run.stderr
    );
    for start in ["observer: running `", "observer summary for "] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(start) && l.contains("e\\x1b]0;pw\\x07\\x0az")),
            "the {start:?} line names the process, escaped, on one line\n{:?}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.lines().any(|l| l.starts_with('z')),
        "a name split a line\n{:?}",
        run.stderr
    );
}

/// A thread that renames itself (prctl PR_SET_NAME, what pthread_setname_np does) to an OSC
/// sequence and a newline, then ends the process: the process_exit line names it escaped.
#[test]
fn thread_names_are_escaped_on_stderr() {
    require_root();
    let ws = Workspace::new("escape-thread");
    let Some(python) = ["/usr/bin/python3", "/bin/python3"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        panic!("python3 is needed to rename a thread at run time");
    };
    let script = "import ctypes, os\n\
                  ctypes.CDLL(None).prctl(15, b'n\\x1b]2;pw\\x07\\nq', 0, 0, 0)\n\
                  os._exit(4)\n";
    let run = ObserverCmd::run()
        .command(python, &["-c", script])
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(4), "{}", run.report());
    assert!(
        !run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{7}'),
        "raw control characters on stderr:\n{:?}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("observer: process_exit")
                && l.contains("(n\\x1b]2;pw\\x07\\x0aq)")),
        "{:?}",
        run.stderr
    );
}

/// `run -- /nonexistent` said "cannot execute the command" with no path or reason and raised
/// a process_exit alert about "observer".
#[test]
fn a_command_that_cannot_run_is_named_with_a_shell_status() {
    require_root();
    let ws = Workspace::new("norun");
    let run = ObserverCmd::run()
        .alerts(&ws)
        .command(Path::new("/nonexistent-observer-cmd"), &[] as &[&str])
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(127), "{}", run.report());
    assert!(
        run.stderr
            .contains("cannot run /nonexistent-observer-cmd: No such file or directory"),
        "{}",
        run.report()
    );
    assert!(
        run.alerts.is_empty() && !run.stderr.contains("process_exit"),
        "{}",
        run.report()
    );

    let not_exec = ws.path("script.txt");
    fs::write(&not_exec, "echo hi\n").unwrap();
    let run = ObserverCmd::run()
        .command(&not_exec, &[] as &[&str])
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(126), "{}", run.report());
    assert!(
        run.stderr.contains(&format!(
            "cannot run {}: Permission denied",
            not_exec.display()
        )),
        "{}",
        run.report()
    );

    let run = ObserverCmd::run()
        .command(Path::new("no-such-command-observer"), &[] as &[&str])
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(127), "{}", run.report());
    assert!(
        run.stderr
            .contains("cannot run no-such-command-observer: command not found"),
        "{}",
        run.report()
    );
}

/// Errors printed every cause twice ("Is a directory (os error 21): Is a directory (os
/// error 21)").
#[test]
fn error_causes_are_printed_once() {
    let ws = Workspace::new("dupcause");
    let run = ObserverCmd::raw(&["report", ws.path("").to_str().unwrap()]).run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    assert_eq!(
        run.stderr.matches("Is a directory").count(),
        1,
        "{}",
        run.report()
    );
}

/// CRC-32 (IEEE), as the recording framing uses.
fn crc32(chunks: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for chunk in chunks {
        for &b in *chunk {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn block(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut head = kind.to_le_bytes().to_vec();
    head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32(&[&head, payload]);
    let mut out = head;
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// `report` read the whole recording into memory (2.1 GB for a 2 GiB file). A 512 MiB file
/// of blocks of a later format addition (which readers skip) is now read in a few MiB.
#[test]
fn report_streams_a_large_recording() {
    let ws = Workspace::new("bigrec");
    let path = ws.path("big.rec");
    let mut out = std::io::BufWriter::new(fs::File::create(&path).unwrap());
    out.write_all(b"OBSREC\r\n").unwrap();
    out.write_all(&2u16.to_le_bytes()).unwrap();
    let filler = block(0x7ff0, &vec![0x5a; 1 << 20]);
    for _ in 0..512 {
        out.write_all(&filler).unwrap();
    }
    out.write_all(&block(4, &[])).unwrap();
    drop(out);
    let (run, peak_kib) = ObserverCmd::raw(&[
        "report",
        path.to_str().unwrap(),
        "-o",
        ws.path("report.txt").to_str().unwrap(),
    ])
    .spawn(&ws)
    .wait_with_peak_rss(TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    eprintln!("observer report of a 512 MiB recording: peak RSS {peak_kib} KiB");
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB for a 512 MiB recording"
    );
}

/// The command of `run` inherited observer's ignored SIGPIPE: a writer whose reader went away
/// got EPIPE errors ("yes: standard output: Broken pipe") instead of ending quietly as it
/// does from a shell.
#[test]
fn run_gives_the_command_the_default_sigpipe() {
    require_root();
    let ws = Workspace::new("sigpipe");
    let run = ObserverCmd::run()
        .command(
            Path::new("/bin/sh"),
            &[
                "-c",
                "yes | head -1 >/dev/null; grep SigIgn /proc/self/status",
            ],
        )
        .run_to_end(&ws, QUICK);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    assert!(
        !run.stderr.contains("Broken pipe"),
        "the command ran with SIGPIPE ignored\n{}",
        run.report()
    );
    // SigIgn is a hex mask; SIGPIPE (13) is bit 12.
    let ignored = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .expect("SigIgn line");
    assert_eq!(ignored & (1 << 12), 0, "{}", run.report());
}
