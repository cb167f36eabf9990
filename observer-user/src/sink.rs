//! Where alerts go: JSON lines to a file or stdout, and one readable line each on stderr.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use crate::alert::{Alert, AlertDetail};
use crate::duration::human;
use crate::frames::own_frames;

pub struct AlertSink {
    json: Option<Box<dyn Write + Send>>,
    to_stderr: bool,
}

impl AlertSink {
    /// `path` `-` means stdout. Files are created without following a symlink at the last
    /// component (a planted link in a shared directory must not redirect our writes).
    pub fn open(path: Option<&Path>, quiet: bool) -> io::Result<Self> {
        let json: Option<Box<dyn Write + Send>> = match path {
            None => None,
            Some(p) if p == Path::new("-") => Some(Box::new(io::stdout())),
            Some(p) => Some(Box::new(BufWriter::new(create_output(p)?))),
        };
        Ok(Self {
            json,
            to_stderr: !quiet,
        })
    }

    pub fn write(&mut self, alert: &Alert) -> io::Result<()> {
        if let Some(w) = self.json.as_mut() {
            writeln!(w, "{}", alert.to_json_line())?;
            w.flush()?;
        }
        if self.to_stderr {
            eprintln!("{}", one_line(alert));
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.json.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Creates (truncates) an output file, refusing to follow a symlink.
pub fn create_output(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn top(stack: &[String]) -> String {
    own_frames(stack)
        .first()
        .cloned()
        .unwrap_or_else(|| "?".to_string())
}

/// A human summary of one alert for the terminal.
pub fn one_line(a: &Alert) -> String {
    let who = format!("tid {} ({})", a.tid, a.comm);
    match &a.detail {
        AlertDetail::LockWait(l) => format!(
            "observer: lock_wait  {who} waited {} in {}; released by {} in {}",
            human(std::time::Duration::from_nanos(l.duration_ns)),
            top(&a.stack),
            l.waker_tid
                .map(|t| format!("tid {t} ({})", l.waker_comm.clone().unwrap_or_default()))
                .unwrap_or_else(|| "?".into()),
            top(&l.waker_stack)
        ),
        AlertDetail::Stall(s) => format!(
            "observer: stall      {who} blocked {} in {} on a lock held by tid {}",
            human(std::time::Duration::from_nanos(s.blocked_ns)),
            top(&a.stack),
            s.owner_tid
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        AlertDetail::Deadlock(d) => format!(
            "observer: deadlock   {}",
            d.cycle
                .iter()
                .map(|m| format!(
                    "tid {} ({}) in {} waits for tid {}",
                    m.tid,
                    m.comm,
                    top(&m.stack),
                    m.owner_tid
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        AlertDetail::ThreadExit(t) => format!(
            "observer: thread_exit {who} ended ({}) while its process lives on; created by {}{}",
            t.signal
                .clone()
                .unwrap_or_else(|| format!("exit code {}", t.exit_code)),
            top(&t.created_by),
            if t.count > 1 {
                format!(" ({} so far from this site)", t.count)
            } else {
                String::new()
            }
        ),
        AlertDetail::ProcessExit(p) => format!(
            "observer: process_exit pid {} ended: {} by {who}{}",
            a.pid,
            p.signal
                .clone()
                .or(p.exit_code.map(|c| format!("exit code {c}")))
                .unwrap_or_default(),
            p.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        AlertDetail::GoroutineWait(g) => format!(
            "observer: goroutine_wait goroutine {} waited {} on {} in {}; released by goroutine {} in {}",
            g.goid,
            human(std::time::Duration::from_nanos(g.duration_ns)),
            g.wait_reason,
            top(&a.stack),
            g.waker_goid.map(|w| w.to_string()).unwrap_or_else(|| "?".into()),
            top(&g.waker_stack)
        ),
        AlertDetail::GoroutineStall(g) => format!(
            "observer: goroutine_stall goroutine {} blocked {} on {} in {}",
            g.goid,
            human(std::time::Duration::from_nanos(g.blocked_ns)),
            g.wait_reason,
            top(&a.stack)
        ),
        AlertDetail::GoroutineLeak(g) => format!(
            "observer: goroutine_leak {} goroutines (+{} in {}) parked on {} created by {}",
            g.count,
            g.growth,
            human(std::time::Duration::from_nanos(g.window_ns)),
            g.wait_reason,
            top(&g.created_by)
        ),
        AlertDetail::GoPanic(g) => format!(
            "observer: go_panic   goroutine {} panicked{} in {}{}",
            g.goid,
            g.message.as_ref().map(|m| format!(" ({m:?})")).unwrap_or_default(),
            top(&a.stack),
            if g.recovered { "; recovered and swallowed" } else { "" }
        ),
        AlertDetail::IdleWait(i) => format!(
            "observer: idle_wait  {who} waited {} in {} ({})",
            human(std::time::Duration::from_nanos(i.duration_ns)),
            top(&a.stack),
            i.syscall
        ),
    }
}
