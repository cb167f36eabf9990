//! Target programs a test starts itself (for `observer watch`).

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::process::wait_until;

/// A C target started directly by the test (for `observer watch`). It is reaped in the
/// background as soon as it exits, as a real parent would, so that it does not linger as a
/// zombie; it is killed when dropped.
pub struct Target {
    pid: u32,
    status: Arc<Mutex<Option<ExitStatus>>>,
    reaper: Option<JoinHandle<()>>,
}

impl Target {
    pub fn spawn<S: AsRef<OsStr>>(binary: &Path, args: &[S]) -> Self {
        Self::spawn_to(binary, args, Stdio::null())
    }

    /// Starts the target and a thread that reaps it, so its exit status is known.
    fn spawn_to<S: AsRef<OsStr>>(binary: &Path, args: &[S], stdout: Stdio) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        let pid = child.id();
        let status = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&status);
        let reaper = thread::spawn(move || {
            let result = child.wait().ok();
            if let Ok(mut s) = slot.lock() {
                *s = result;
            }
        });
        Target {
            pid,
            status,
            reaper: Some(reaper),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status.lock().ok().and_then(|s| *s)
    }

    /// Waits until the target has exited; false on timeout.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.exit_status().is_some())
    }

    /// Thread ids of the target by thread name (comm), read from /proc.
    pub fn tids_named(&self, comm: &str) -> Vec<u32> {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Vec::new();
        };
        let mut tids: Vec<u32> = tasks
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let name = fs::read_to_string(entry.path().join("comm")).ok()?;
                (name.trim_end() == comm).then_some(tid)
            })
            .collect();
        tids.sort_unstable();
        tids
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            // SAFETY: kill(2) on the pid of our own child, which is not reaped yet (its status
            // slot is empty), so the pid cannot have been reused.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if let Some(reaper) = self.reaper.take() {
            let _ = reaper.join();
        }
    }
}

impl Target {
    /// Like [`Target::spawn`], with the target's stdout written to `stdout` (for programs that
    /// print what the test needs, such as a port).
    pub fn spawn_with_stdout<S: AsRef<OsStr>>(binary: &Path, args: &[S], stdout: &Path) -> Self {
        let file = fs::File::create(stdout)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", stdout.display()));
        Self::spawn_to(binary, args, Stdio::from(file))
    }
}
