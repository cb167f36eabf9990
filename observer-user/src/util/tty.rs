//! Facts about the admin's terminal that both the progress lines and the live view need: is
//! stderr a terminal that understands escapes, how large is it, and does a live view own it now.
//!
//! The live view sets the "owner" fact ([`claim_screen`], [`release_screen`]); progress reads it
//! ([`screen_owned`]) to draw into the live view's status line instead of scribbling on stderr.

use std::io::IsTerminal;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The fd a live view drew on and has not restored yet, or -1. One live view per process.
static SCREEN_OWNER: AtomicI32 = AtomicI32::new(-1);

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: the fd is only borrowed for this call, and `is_terminal` only inspects it (an fd
    // that is not open reads as "not a terminal"); -1 would break BorrowedFd's invariant.
    fd >= 0 && unsafe { BorrowedFd::borrow_raw(fd) }.is_terminal()
}

/// Whether a terminal of type `term` (`$TERM`) understands escape sequences.
pub fn understands_escapes(term: Option<&str>) -> bool {
    !matches!(term, None | Some("") | Some("dumb"))
}

/// Stderr is a terminal that understands escape sequences (checks `$TERM`).
pub fn stderr_is_capable_terminal() -> bool {
    let term = std::env::var("TERM").ok();
    std::io::stderr().is_terminal() && understands_escapes(term.as_deref())
}

/// Columns and rows of the terminal on `fd`, or `None` if it is not one or has no size.
pub fn terminal_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass; fd validity is checked by
    // the kernel (EBADF/ENOTTY come back as -1).
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Marks the terminal on `fd` as owned by a live view; false if one already owns a terminal.
pub fn claim_screen(fd: RawFd) -> bool {
    SCREEN_OWNER
        .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// Gives up ownership of `fd`; false if `fd` was not the owner (released already).
pub fn release_screen(fd: RawFd) -> bool {
    SCREEN_OWNER
        .compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// Gives up ownership whoever holds it and returns the fd that was owned. Async-signal-safe
/// (one atomic swap): a panic hook or a signal handler restores the terminal with it.
pub fn take_screen() -> Option<RawFd> {
    let fd = SCREEN_OWNER.swap(-1, Ordering::SeqCst);
    (fd >= 0).then_some(fd)
}

/// The fd a live view owns now, if any.
pub fn screen_owner() -> Option<RawFd> {
    let fd = SCREEN_OWNER.load(Ordering::SeqCst);
    (fd >= 0).then_some(fd)
}

/// True while a live view owns the terminal (then other stderr output would scribble on it).
pub fn screen_owned() -> bool {
    screen_owner().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumb_or_unknown_terminals_get_no_escapes() {
        assert!(understands_escapes(Some("xterm-256color")));
        assert!(!understands_escapes(Some("dumb")));
        assert!(!understands_escapes(Some("")));
        assert!(!understands_escapes(None));
    }

    #[test]
    fn a_closed_fd_is_no_terminal() {
        assert!(!is_terminal(-1));
        assert_eq!(terminal_size(-1), None);
    }
}
