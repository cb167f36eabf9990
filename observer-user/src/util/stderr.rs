//! What observer says on stderr: alert lines, warnings, the summary.
//!
//! Two rules, kept here so that no caller can forget them:
//! - Text that came from a target (thread and process names, paths, Go panic messages, symbol
//!   names) is escaped: a control character in a thread name must not retitle or recolour the
//!   admin's terminal, nor split one journal line in two. [`escape`] turns every control (and
//!   bidirectional-override) character into `\xNN` / `\u{NNNN}`.
//! - Losing stderr is not fatal: `eprintln!` panics when the write fails (a reader that went
//!   away: EPIPE), which killed the whole agent. Here a failed write is ignored; alerts still
//!   go to their files and the exit status is unchanged.

use std::{borrow::Cow, fmt, io::Write};

/// Characters that change how a terminal or a log reader shows what follows.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control characters written as `\xNN` (or `\u{NNNN}` above U+00FF), so it shows as
/// one inert line.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// Writes one line (escaped, then `'\n'`) to stderr; a failed write is ignored.
pub fn line(args: fmt::Arguments<'_>) {
    let text = args.to_string();
    let mut text = escape(&text).into_owned();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes several lines as they are (the caller escaped what came from targets); a failed
/// write is ignored.
pub fn text(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `eprintln!` that escapes the line and survives a lost stderr (see the module doc).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::util::stderr::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("worker-1"), "worker-1");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\u{1b}]0;pwned\u{7}x"),
            "\\x1b]0;pwned\\x07x",
            "an OSC title sequence stays inert"
        );
        assert_eq!(escape("a\nb\rc\td"), "a\\x0ab\\x0dc\\x09d");
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m"); // C1 CSI
        assert_eq!(escape("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(escape("ünïcödé ok"), "ünïcödé ok");
    }
}
