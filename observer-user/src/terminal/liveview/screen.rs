//! The terminal while the live view is on: alternate screen, hidden cursor, frames written
//! without blocking, and the restore (drop, panic hook, signal handler).
//!
//! Which fd the live view owns is kept in [`crate::util::tty`], so that progress lines know to
//! stay off the screen and a signal handler can restore it without the `LiveTerminal`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::os::fd::RawFd;

use super::layout::{pad, render_lines};
use super::model::LiveSnapshot;
use crate::util::tty;

pub(super) const ENTER: &str = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";
pub(super) const LEAVE: &[u8] = b"\x1b[0m\x1b[?25h\x1b[?1049l";
/// Synchronized output (terminals that know it show the frame at once; others ignore it).
pub(super) const BEGIN_FRAME: &str = "\x1b[?2026h";
pub(super) const END_FRAME: &str = "\x1b[?2026l";
/// Alert lines kept for the "recent alerts" section.
const MAX_NOTES: usize = 50;
const FALLBACK_SIZE: (u16, u16) = (80, 24);

/// Whether the live view should run: asked for, a terminal, and one that understands escapes.
pub fn should_run(enabled: bool, is_tty: bool, term: Option<&str>) -> bool {
    enabled && is_tty && tty::understands_escapes(term)
}

/// Leaves the alternate screen and shows the cursor if a live view is on. Async-signal-safe
/// (one atomic swap, one write(2)): callable from a signal handler or a panic hook.
pub fn emergency_restore() {
    if let Some(fd) = tty::take_screen() {
        // SAFETY: writes a static buffer to a descriptor; a failure leaves nothing else to do.
        unsafe {
            libc::write(fd, LEAVE.as_ptr().cast(), LEAVE.len());
        }
    }
}

/// The terminal while the live view is on. Dropping it restores the terminal.
pub struct LiveTerminal {
    fd: RawFd,
    notes: VecDeque<String>,
    last_size: Option<(u16, u16)>,
}

impl LiveTerminal {
    /// Takes over stderr's terminal if `enabled`, stderr is a terminal and `TERM` is not dumb;
    /// `None` otherwise (and when another live view is already on).
    pub fn new_if_tty(enabled: bool) -> Option<LiveTerminal> {
        let term = std::env::var("TERM").ok();
        Self::on_fd(libc::STDERR_FILENO, enabled, term.as_deref())
    }

    pub(super) fn on_fd(fd: RawFd, enabled: bool, term: Option<&str>) -> Option<LiveTerminal> {
        if !should_run(enabled, tty::is_terminal(fd), term) {
            return None;
        }
        if !tty::claim_screen(fd) {
            return None;
        }
        install_panic_hook();
        let t = LiveTerminal {
            fd,
            notes: VecDeque::new(),
            last_size: None,
        };
        if write_all_fd(fd, ENTER.as_bytes()).is_err() {
            tty::release_screen(fd);
            return None;
        }
        Some(t)
    }

    /// Columns and rows now (80x24 when the terminal does not say).
    pub fn size(&self) -> (u16, u16) {
        tty::terminal_size(self.fd).unwrap_or(FALLBACK_SIZE)
    }

    /// Keeps a one-line message (an alert) for the "recent alerts" section instead of printing it.
    pub fn note(&mut self, line: String) {
        if self.notes.len() == MAX_NOTES {
            self.notes.pop_front();
        }
        self.notes.push_back(line);
    }

    /// Redraws the screen. Skips the frame (returns Ok) when the terminal cannot take output
    /// now (scroll lock, a stalled ssh link): the observer must never block on its own view.
    pub fn draw(&mut self, snapshot: &LiveSnapshot) -> io::Result<()> {
        if tty::screen_owner() != Some(self.fd) {
            return Ok(()); // restored already
        }
        if !writable_now(self.fd) {
            return Ok(());
        }
        let (w, h) = self.size();
        let notes: Vec<&str> = self.notes.iter().map(String::as_str).collect();
        let status = crate::util::progress::live_status();
        let lines = render_lines(snapshot, &notes, status.as_deref(), w, h);
        let resized = self.last_size != Some((w, h));
        self.last_size = Some((w, h));
        let frame = frame_bytes(&lines, w, h, resized);
        write_all_fd(self.fd, frame.as_bytes())
    }

    /// Shows the cursor and leaves the alternate screen; idempotent.
    pub fn restore(&mut self) {
        if tty::release_screen(self.fd) {
            let _ = write_all_fd(self.fd, LEAVE);
        }
    }
}

impl Drop for LiveTerminal {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The bytes of one redraw: each line cleared and rewritten in place (no full-screen clear, so
/// no flicker), the title in reverse video, and the rest of the screen cleared below.
pub(super) fn frame_bytes(lines: &[String], w: u16, h: u16, resized: bool) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 8).sum::<usize>() + 32);
    out.push_str(BEGIN_FRAME);
    if resized {
        out.push_str("\x1b[2J");
    }
    out.push_str("\x1b[H");
    let n = lines.len().min(usize::from(h));
    for (i, line) in lines.iter().take(n).enumerate() {
        out.push_str("\x1b[2K");
        if i == 0 {
            let _ = write!(out, "\x1b[7m{}\x1b[0m", pad(line, usize::from(w)));
        } else {
            out.push_str(line);
        }
        if i + 1 < n {
            out.push_str("\r\n");
        }
    }
    // Never a newline after the bottom line: it would scroll the screen.
    if n < usize::from(h) {
        out.push_str("\r\n\x1b[J");
    }
    out.push_str(END_FRAME);
    out
}

fn writable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc == 1 && p.revents & libc::POLLOUT != 0
}

fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// A panic message printed on the alternate screen would vanish with it: restore first.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            emergency_restore();
            previous(info);
        }));
    });
}
