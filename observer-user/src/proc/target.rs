//! The observed process: an existing PID, or a command started under observation.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("no such process: pid {0} does not exist")]
    NoSuchPid(u32),
    #[error("pid {pid}: {source}")]
    Inaccessible {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },
    #[error("pipe: {0}")]
    Pipe(#[source] io::Error),
    #[error("pid {pid} ({name}) is a kernel thread: it has no user space to observe; pass the pid of a user process")]
    KernelThread { pid: u32, name: String },
    #[error("pid {pid} ({name}) has already exited: it is a zombie that its parent (pid {parent}) has not reaped, and has nothing left to observe")]
    Zombie { pid: u32, name: String, parent: u32 },
    // The io error is part of the message, not a source: printed once, where it belongs.
    #[error("pid {pid}: cannot read /proc/{pid}/maps ({error}); observer needs ptrace access to the process to read its memory map and stacks: run it as root or with CAP_SYS_PTRACE (and a kernel.yama.ptrace_scope that allows it)")]
    MapsUnreadable { pid: u32, error: io::Error },
    /// The command cannot be executed; `exit_code` is what a shell would exit with (127: not
    /// found, 126: found but not executable).
    #[error("cannot run {program}: {reason}")]
    CannotRun {
        program: String,
        reason: String,
        exit_code: u8,
    },
}

/// Checks, before anything is attached, that `program` can be executed the way `execvp` will
/// look for it, so that a typo is reported with its path and reason (and a shell's exit code)
/// instead of as the death of a process named "observer".
pub fn check_command(program: &str) -> Result<(), TargetError> {
    use std::os::unix::fs::PermissionsExt;
    let cannot = |reason: String, exit_code| TargetError::CannotRun {
        program: program.to_string(),
        reason,
        exit_code,
    };
    let path = if program.contains('/') {
        std::path::PathBuf::from(program)
    } else {
        match resolve_program(program) {
            Some(p) => p,
            None => {
                return Err(cannot(
                    "command not found in PATH (give its path, e.g. ./NAME)".into(),
                    127,
                ))
            }
        }
    };
    let meta = std::fs::metadata(&path).map_err(|e| {
        let code = if e.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        cannot(crate::util::errors::io_reason(&e), code)
    })?;
    if meta.is_dir() {
        return Err(cannot("is a directory".into(), 126));
    }
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| cannot("contains a NUL byte".into(), 127))?;
    // SAFETY: a valid NUL-terminated path. access() checks with the real uid, like the
    // kernel's exec does with ours here (observer is not setuid).
    let executable = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0
        && meta.permissions().mode() & 0o111 != 0;
    if !executable {
        return Err(cannot("Permission denied (not executable)".into(), 126));
    }
    Ok(())
}

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Checks that `pid` names a live user process (not a thread id of another process, not a
/// kernel thread, not a zombie) whose memory map observer can read.
pub fn check_pid(pid: u32) -> Result<(), TargetError> {
    let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
    let status = match read("status") {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(TargetError::NoSuchPid(pid)),
        Err(source) => return Err(TargetError::Inaccessible { pid, source }),
    };
    let stat = read("stat").unwrap_or_default();
    check_proc_text(pid, &status, &stat)?;
    // A kernel thread's maps are empty and a zombie's unreadable: those were refused above,
    // so a failure here is a permission.
    match std::fs::File::open(format!("/proc/{pid}/maps"))
        .and_then(|mut f| io::Read::read(&mut f, &mut [0u8; 64]))
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TargetError::NoSuchPid(pid)),
        Err(error) => Err(TargetError::MapsUnreadable { pid, error }),
    }
}

/// The refusals that `/proc/PID/status` and `/proc/PID/stat` alone decide.
pub fn check_proc_text(pid: u32, status: &str, stat: &str) -> Result<(), TargetError> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let name = field("Name").unwrap_or("?").to_string();
    let tgid = field("Tgid").and_then(|v| v.parse::<u32>().ok());
    if tgid.is_some_and(|t| t != pid) {
        return Err(TargetError::Inaccessible {
            pid,
            source: io::Error::other(format!(
                "{pid} is a thread of process {}; pass the process id",
                tgid.unwrap_or(0)
            )),
        });
    }
    // After the comm (which may hold spaces and parentheses): state, ppid, pgrp, session,
    // tty_nr, tpgid, flags (proc(5)).
    let after_comm: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let flags = after_comm.get(6).and_then(|f| f.parse::<u64>().ok());
    let kthread = field("Kthread") == Some("1") || flags.is_some_and(|f| f & PF_KTHREAD != 0);
    if kthread {
        return Err(TargetError::KernelThread { pid, name });
    }
    let state = field("State")
        .and_then(|s| s.chars().next())
        .or_else(|| after_comm.first().and_then(|s| s.chars().next()));
    if matches!(state, Some('Z' | 'X')) {
        let parent = field("PPid").and_then(|v| v.parse().ok()).unwrap_or(0);
        return Err(TargetError::Zombie { pid, name, parent });
    }
    Ok(())
}

/// Whether the process still exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

/// A command started by observer that waits, between fork and exec, until the probes are
/// watching it: observed from its first instruction.
///
/// A plain fork/exec instead of `std::process::Command`: `Command::spawn` waits for the exec to
/// happen, and our child must not exec before we let it.
pub struct Launched {
    pub pid: u32,
    /// The executable the command will run, when it could be resolved.
    pub program: Option<std::path::PathBuf>,
    gate: Option<OwnedFd>,
    /// Closed by a successful exec (close-on-exec); a failed exec writes its errno into it.
    exec_status: Option<OwnedFd>,
    /// argv[0], for messages.
    command: String,
    exit: Option<tokio::task::JoinHandle<i32>>,
}

impl Launched {
    pub fn spawn(argv: &[String]) -> Result<Self, TargetError> {
        let cmd_text = argv.join(" ");
        let spawn_err = |source| TargetError::Spawn {
            cmd: cmd_text.clone(),
            source,
        };
        if argv.is_empty() {
            return Err(spawn_err(io::Error::other("empty command")));
        }
        let c_args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| spawn_err(io::Error::other("argument contains a NUL byte")))?;
        let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        c_argv.push(std::ptr::null());
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two fds; O_CLOEXEC keeps them out of the exec'ed program.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(TargetError::Pipe(io::Error::last_os_error()));
        }
        // SAFETY: freshly created, owned by nobody else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: as above.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(TargetError::Pipe(io::Error::last_os_error()));
        }
        // SAFETY: as above.
        let (status_read, status_write) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: between fork and exec the child only calls async-signal-safe functions
        // (close, read, signal, execvp, write, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(spawn_err(io::Error::last_os_error()));
        }
        if pid == 0 {
            unsafe {
                libc::close(write_end.as_raw_fd());
                libc::close(status_read.as_raw_fd());
                let mut byte = 0u8;
                let n = libc::read(read_end.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                if n != 1 {
                    libc::_exit(127); // observer went away before letting us run
                }
                // Rust's runtime ignores SIGPIPE in observer, and an ignored signal stays
                // ignored across exec: the command must get the default, as from a shell (std's
                // Command does the same), or `yes | head` under `run` never ends quietly.
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::execvp(c_argv[0], c_argv.as_ptr());
                // Checked before the fork (check_command); this is the rare file that changed
                // in between: observer says why (see `release`).
                let errno = *libc::__errno_location();
                libc::write(
                    status_write.as_raw_fd(),
                    (&errno as *const i32).cast(),
                    std::mem::size_of::<i32>(),
                );
                libc::_exit(127);
            }
        }
        drop(read_end);
        drop(status_write);
        let pid = pid as u32;
        let exit = tokio::task::spawn_blocking(move || wait_for(pid));
        Ok(Self {
            pid,
            program: resolve_program(&argv[0]),
            gate: Some(write_end),
            exec_status: Some(status_read),
            command: argv[0].clone(),
            exit: Some(exit),
        })
    }

    /// Lets the command exec (call once the probes watch `pid`), and waits briefly until it
    /// has: before that, its maps and name are still observer's own. An exec that failed is
    /// an error naming the command and why (with a shell's exit code), not a process named
    /// "observer" that exited 127.
    pub fn release(&mut self) -> Result<(), TargetError> {
        if let Some(fd) = self.gate.take() {
            // SAFETY: writing one byte to our own pipe.
            unsafe { libc::write(fd.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }
        if let Some(fd) = self.exec_status.take() {
            if let Some(errno) = exec_errno(&fd) {
                let e = io::Error::from_raw_os_error(errno);
                return Err(TargetError::CannotRun {
                    program: self.command.clone(),
                    reason: crate::util::errors::io_reason(&e),
                    exit_code: if errno == libc::ENOENT { 127 } else { 126 },
                });
            }
        }
        let ours = std::fs::read_link("/proc/self/exe").ok();
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(1) {
            match std::fs::read_link(format!("/proc/{}/exe", self.pid)) {
                Ok(exe) if Some(&exe) != ours.as_ref() => break,
                Err(_) => break, // exited (exec failed) or gone
                _ => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        Ok(())
    }

    /// The command's exit: its code, or 128 + signal like a shell. Poll the handle by
    /// reference so that a `select!` losing a round does not drop it.
    pub fn take_exit(&mut self) -> Option<tokio::task::JoinHandle<i32>> {
        self.exit.take()
    }
}

/// The errno a failed exec reported on `fd`; None once the exec happened (the pipe closed
/// without data), or after 5 s (a child stopped before its exec is not waited for).
fn exec_errno(fd: &OwnedFd) -> Option<i32> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 5000) } <= 0 {
        return None;
    }
    let mut buf = [0u8; 4];
    // SAFETY: reading into a buffer of that size from our own pipe.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    (n == 4).then(|| i32::from_ne_bytes(buf))
}

fn wait_for(pid: u32) -> i32 {
    let mut status = 0i32;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        if rc == pid as i32 {
            break;
        }
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return 1;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// The file `execvp` would run for `program`: as given when it names a path, else the first
/// executable match on `PATH`.
pub fn resolve_program(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return is_exec(&p).then_some(p);
    }
    std::env::var_os("PATH")
        .as_deref()
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .map(|dir| dir.join(program))
        .find(|p| is_exec(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, state: &str, tgid: u32, ppid: u32, kthread: Option<u8>) -> String {
        let mut s = format!(
            "Name:\t{name}\nUmask:\t0022\nState:\t{state}\nTgid:\t{tgid}\nNgid:\t0\nPid:\t{tgid}\nPPid:\t{ppid}\n"
        );
        if let Some(k) = kthread {
            s.push_str(&format!("Kthread:\t{k}\n"));
        }
        s
    }

    #[test]
    fn a_kernel_thread_is_refused_by_its_flag_or_status_line() {
        let stat = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0";
        let e =
            check_proc_text(2, &status("kthreadd", "S (sleeping)", 2, 0, None), stat).unwrap_err();
        assert!(matches!(e, TargetError::KernelThread { pid: 2, .. }), "{e}");
        assert!(e.to_string().contains("kernel thread") && e.to_string().contains("kthreadd"));
        let user_stat = "7 (a) b) S 1 7 7 0 -1 4194560 0 0";
        assert!(matches!(
            check_proc_text(7, &status("x", "S (sleeping)", 7, 1, Some(1)), user_stat),
            Err(TargetError::KernelThread { .. })
        ));
        check_proc_text(7, &status("x", "S (sleeping)", 7, 1, Some(0)), user_stat).unwrap();
    }

    #[test]
    fn unreadable_maps_name_the_file_and_the_capability() {
        let e = TargetError::MapsUnreadable {
            pid: 42,
            error: io::Error::from_raw_os_error(libc::EACCES),
        };
        let text = e.to_string();
        assert!(
            text.contains("/proc/42/maps") && text.contains("CAP_SYS_PTRACE"),
            "{text}"
        );
    }

    #[test]
    fn a_zombie_is_refused_with_its_parent() {
        let stat = "40 (sh) Z 39 40 40 0 -1 4227148 0 0";
        let e =
            check_proc_text(40, &status("sh", "Z (zombie)", 40, 39, Some(0)), stat).unwrap_err();
        assert!(
            matches!(
                e,
                TargetError::Zombie {
                    pid: 40,
                    parent: 39,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("not reaped"), "{e}");
    }

    #[test]
    fn a_thread_id_is_refused_and_a_live_process_accepted() {
        let stat = "41 (w) S 1 40 40 0 -1 4194368 0 0";
        let e =
            check_proc_text(41, &status("w", "S (sleeping)", 40, 1, Some(0)), stat).unwrap_err();
        assert!(e.to_string().contains("thread of process 40"), "{e}");
        check_proc_text(40, &status("w", "S (sleeping)", 40, 1, None), "").unwrap();
    }

    fn released(argv: &[&str]) -> (Result<(), TargetError>, i32) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let mut launched = Launched::spawn(&argv).unwrap();
        let result = launched.release();
        let code = rt.block_on(launched.take_exit().unwrap()).unwrap();
        (result, code)
    }

    /// The file checked by check_command can change before the exec: the failure then names
    /// the command and the reason.
    #[test]
    fn a_failed_exec_is_reported_with_its_reason() {
        let (result, code) = released(&["/nonexistent-observer-cmd"]);
        let e = result.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot run /nonexistent-observer-cmd: No such file or directory"
        );
        assert!(matches!(e, TargetError::CannotRun { exit_code: 127, .. }));
        assert_eq!(code, 127);

        let dir = tempfile::tempdir().unwrap();
        let (result, _) = released(&[dir.path().to_str().unwrap()]);
        assert!(
            matches!(result, Err(TargetError::CannotRun { exit_code: 126, ref reason, .. }) if reason == "Permission denied"),
            "{result:?}"
        );

        let (result, code) = released(&["/bin/sh", "-c", "exit 5"]);
        assert!(result.is_ok());
        assert_eq!(code, 5);
    }

    #[test]
    fn commands_that_cannot_run_are_found_before_the_fork() {
        let e = check_command("/nonexistent-observer-cmd").unwrap_err();
        assert!(matches!(e, TargetError::CannotRun { exit_code: 127, .. }));
        let dir = tempfile::tempdir().unwrap();
        let e = check_command(dir.path().to_str().unwrap()).unwrap_err();
        assert!(e.to_string().ends_with("is a directory"), "{e}");
        check_command("sh").unwrap();
    }
}
