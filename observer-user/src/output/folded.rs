//! Folded stacks: the text format of Brendan Gregg's `flamegraph.pl` and of `inferno-flamegraph`.
//!
//! One line per distinct stack: `process;thread;outermost;...;innermost <weight>`, where the weight
//! is blocked time in nanoseconds (render with `flamegraph.pl --countname=ns`). Identical stacks are
//! merged; lines are sorted so that output is stable across runs.
//!
//! Both tools split frames on `;` and take the text after the last space as the weight, so frame
//! names have `;` replaced by `:` and line breaks (and other control characters) by spaces; spaces
//! inside a frame, as in `transfer (bank.c:14)`, are fine. Empty names become `[unknown]`.
//!
//! The profile keeps the names sanitized ([`crate::output::profile`]); stacks that differ only
//! in their addresses are one line here.
//!
//! Idle time (waiting for work or for time) has a root frame of its own,
//! `[idle];process;thread;...`, so a flame graph shows it as one tower beside the blocked time
//! and `grep -v '^\[idle\]'` leaves only the blocked stacks; blocked lines (lock and kernel
//! waits) start with the process as before.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::output::profile::{BlockedProfile, Key, IDLE_ROOT};

#[derive(Debug, thiserror::Error)]
pub enum FoldedError {
    #[error("cannot write folded stacks to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl BlockedProfile {
    /// The folded lines, sorted, without trailing newlines. Stacks that differ only in their
    /// addresses are one line.
    pub fn lines(&self) -> Vec<String> {
        let mut by_text: HashMap<String, u64> = HashMap::new();
        for (key, t) in &self.stacks {
            let weight = by_text.entry(folded_text(key)).or_default();
            *weight = weight.saturating_add(t.weight_ns);
        }
        let mut lines: Vec<String> = by_text
            .into_iter()
            .map(|(text, weight)| format!("{} {weight}", protect_trailing_number(&text)))
            .collect();
        lines.sort();
        lines
    }

    /// Writes the folded lines to `w`.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        for line in self.lines() {
            writeln!(w, "{line}")?;
        }
        w.flush()
    }

    /// Writes the folded lines to the file `dest`, or to stdout if `dest` is `-`.
    pub fn write_to(&self, dest: impl AsRef<Path>) -> Result<(), FoldedError> {
        let path = dest.as_ref();
        let err = |source| FoldedError::Write {
            path: path.to_path_buf(),
            source,
        };
        if path == Path::new("-") {
            return self.write(&mut io::stdout().lock()).map_err(err);
        }
        let file = crate::output::output_file::create(path).map_err(err)?;
        self.write(&mut BufWriter::new(file)).map_err(err)
    }
}

/// `process;thread;outermost;...;innermost`, under `[idle];` for idle time.
fn folded_text(key: &Key) -> String {
    let mut text = String::with_capacity(64);
    if key.category.is_idle() {
        text.push_str(IDLE_ROOT);
        text.push(';');
    }
    text.push_str(&key.process);
    text.push(';');
    text.push_str(&key.thread);
    for f in &key.frames {
        text.push(';');
        text.push_str(&f.name);
    }
    text
}

/// FlameGraph and inferno read `a;b 3 500` as a two-count (differential) line, so a last frame
/// ending in " <number>" (a thread named `worker 3`) would lose its number: join it with a
/// no-break space instead.
fn protect_trailing_number(stack: &str) -> String {
    match stack.rsplit_once(' ') {
        Some((head, tail))
            if !tail.is_empty()
                && !tail.contains(';')
                && tail.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            format!("{head}\u{a0}{tail}")
        }
        _ => stack.to_string(),
    }
}

#[cfg(test)]
mod trailing_number_tests {
    use super::protect_trailing_number;

    #[test]
    fn trailing_numbers_are_joined() {
        assert_eq!(protect_trailing_number("p;worker 3"), "p;worker\u{a0}3");
        assert_eq!(protect_trailing_number("p;t;f (a.c:3)"), "p;t;f (a.c:3)");
        assert_eq!(protect_trailing_number("p;t"), "p;t");
        assert_eq!(protect_trailing_number("p 1;t"), "p 1;t");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn writes_file_and_reports_path_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.folded");
        let mut p = BlockedProfile::new();
        p.add("p", "t", &frames(&["f"]), 1);
        p.add("p", "t", &frames(&["g"]), 2);
        p.write_to(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "p;t;f 1\np;t;g 2\n"
        );

        let bad = dir.path().join("missing-dir").join("x");
        let e = p.write_to(&bad).unwrap_err();
        assert!(e.to_string().contains("missing-dir"), "{e}");
    }

    #[test]
    fn idle_time_has_its_own_root_frame() {
        use crate::output::profile::Category;
        use crate::stacks::frame::from_names;
        let mut p = BlockedProfile::new();
        let pool = from_names(&frames(&["[futex]", "pthread_cond_wait", "pool_worker"]));
        let lock = from_names(&frames(&["[lock: pthread_mutex]", "update"]));
        let disk = from_names(&frames(&["io_schedule", "read_disk"]));
        p.add_many_frames(Category::Idle, "srv", "pool", &pool, 60_000, 600);
        p.add_frames(Category::Lock, "srv", "worker", &lock, 300);
        p.add_frames(Category::Kernel, "srv", "worker", &disk, 20);
        // The same stack as idle and as blocked time stays two lines.
        p.add_frames(Category::Idle, "srv", "worker", &lock, 5);
        assert_eq!(
            p.lines(),
            vec![
                "[idle];srv;pool;pool_worker;pthread_cond_wait;[futex] 60000",
                "[idle];srv;worker;update;[lock: pthread_mutex] 5",
                "srv;worker;read_disk;io_schedule 20",
                "srv;worker;update;[lock: pthread_mutex] 300",
            ]
        );
    }

    /// The parsing rules of the readers: speedscope takes `^(.*) (\d+)$` and splits on `;`;
    /// flamegraph.pl and inferno take the number after the last space, and a second number
    /// before it (a differential profile) if the stack itself ends in ` <number>`.
    #[test]
    fn lines_parse_in_flamegraph_and_speedscope() {
        let mut p = BlockedProfile::new();
        let stack = frames(&[
            "[chan receive]",
            "main.lockedSection (/tmp/x/main.go:23)",
            "std::map<int, int>::find (stl_tree.h:12)",
            "libc.so.6+0x8b1a4",
            "[unknown] 0x7f0012345678",
        ]);
        p.add("my server", "worker 1:a", &stack, 123_456_789_012);
        for line in p.lines() {
            let (rest, weight) = line.rsplit_once(' ').unwrap();
            assert!(weight.parse::<u64>().is_ok(), "{line}");
            let tail = rest.rsplit_once(' ').map_or(rest, |(_, t)| t);
            assert!(tail.parse::<f64>().is_err(), "read as differential: {line}");
            let parts: Vec<&str> = rest.split(';').collect();
            assert_eq!(parts.len(), 2 + stack.len(), "{line}");
            assert_eq!(parts[2], "[unknown] 0x7f0012345678");
            assert_eq!(parts[6], "[chan receive]");
        }
    }
}
