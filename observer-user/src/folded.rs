//! Folded stacks: the text format of Brendan Gregg's `flamegraph.pl` and of `inferno-flamegraph`.
//!
//! One line per distinct stack: `process;thread;outermost;...;innermost <weight>`, where the weight
//! is blocked time in nanoseconds (render with `flamegraph.pl --countname=ns`). Identical stacks are
//! merged; lines are sorted so that output is stable across runs.
//!
//! Both tools split frames on `;` and take the text after the last space as the weight, so frame
//! names have `;` replaced by `:` and line breaks (and other control characters) by spaces; spaces
//! inside a frame, as in `transfer (bank.c:14)`, are fine. Empty names become `[unknown]`.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FoldedError {
    #[error("cannot write folded stacks to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Blocked-time profile keyed by process, thread and stack.
#[derive(Debug, Clone, Default)]
pub struct FoldedProfile {
    /// Key: sanitized `[process, thread, outermost, ..., innermost]`.
    stacks: HashMap<Vec<String>, Totals>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    weight_ns: u64,
    count: u64,
}

/// One merged stack with its totals, for summaries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopStack {
    pub process: String,
    pub thread: String,
    /// Innermost first.
    pub frames: Vec<String>,
    /// Summed weight (blocked nanoseconds).
    pub weight_ns: u64,
    /// Number of samples (waits) merged into this stack.
    pub count: u64,
}

impl FoldedProfile {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; `frames_innermost_first` is as symbolized (innermost first).
    pub fn add(
        &mut self,
        process: &str,
        thread: &str,
        frames_innermost_first: &[String],
        weight_ns: u64,
    ) {
        self.add_many(process, thread, frames_innermost_first, weight_ns, 1);
    }

    /// Like [`Self::add`] for `count` waits summed elsewhere (the kernel's aggregates).
    pub fn add_many(
        &mut self,
        process: &str,
        thread: &str,
        frames_innermost_first: &[String],
        weight_ns: u64,
        count: u64,
    ) {
        let mut key = Vec::with_capacity(frames_innermost_first.len() + 2);
        key.push(sanitize(process));
        key.push(sanitize(thread));
        key.extend(frames_innermost_first.iter().rev().map(|f| sanitize(f)));
        let totals = self.stacks.entry(key).or_default();
        totals.weight_ns = totals.weight_ns.saturating_add(weight_ns);
        totals.count = totals.count.saturating_add(count);
    }

    /// Number of distinct stacks.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    pub fn total_weight_ns(&self) -> u64 {
        self.stacks
            .values()
            .fold(0u64, |acc, t| acc.saturating_add(t.weight_ns))
    }

    /// The folded lines, sorted, without trailing newlines.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .map(|(key, t)| {
                format!(
                    "{} {}",
                    protect_trailing_number(&key.join(";")),
                    t.weight_ns
                )
            })
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
        let file = crate::sink::create_output(path).map_err(err)?;
        self.write(&mut BufWriter::new(file)).map_err(err)
    }

    /// The `n` heaviest stacks, heaviest first (ties broken by stack text, for stable output).
    pub fn top(&self, n: usize) -> Vec<TopStack> {
        let mut all: Vec<(&Vec<String>, &Totals)> = self.stacks.iter().collect();
        all.sort_by(|a, b| b.1.weight_ns.cmp(&a.1.weight_ns).then_with(|| a.0.cmp(b.0)));
        all.into_iter().take(n).map(to_top).collect()
    }

    /// Every merged stack in a stable order (process, thread, then frames outermost first), for
    /// exporters (pprof, SVG) that need the counts and the frames, not just the folded text.
    pub fn entries(&self) -> Vec<TopStack> {
        let mut all: Vec<(&Vec<String>, &Totals)> = self.stacks.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter().map(to_top).collect()
    }
}

/// A stored key (process, thread, frames outermost first) and its totals as a `TopStack`.
fn to_top((key, t): (&Vec<String>, &Totals)) -> TopStack {
    TopStack {
        process: key[0].clone(),
        thread: key[1].clone(),
        frames: key[2..].iter().rev().cloned().collect(),
        weight_ns: t.weight_ns,
        count: t.count,
    }
}

fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "[unknown]".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_identical_stacks_and_orders_outermost_first() {
        let mut p = FoldedProfile::new();
        let s = frames(&["__lll_lock_wait", "transfer_a_to_b (bank.c:14)", "main"]);
        p.add("bank", "worker", &s, 100);
        p.add("bank", "worker", &s, 250);
        p.add("bank", "other", &s, 5);
        assert_eq!(
            p.lines(),
            vec![
                "bank;other;main;transfer_a_to_b (bank.c:14);__lll_lock_wait 5",
                "bank;worker;main;transfer_a_to_b (bank.c:14);__lll_lock_wait 350",
            ]
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p.total_weight_ns(), 355);
    }

    #[test]
    fn sanitizes_separators() {
        let mut p = FoldedProfile::new();
        p.add(
            "a;b",
            "t\nx",
            &frames(&["std::vec<int; 3>::f", "", "line\r\nbreak"]),
            7,
        );
        let lines = p.lines();
        assert_eq!(
            lines,
            vec!["a:b;t x;line  break;[unknown];std::vec<int: 3>::f 7"]
        );
        // What flamegraph.pl/inferno do: the weight follows the last space, frames split on ';'.
        let (stack, count) = lines[0].rsplit_once(' ').unwrap();
        assert_eq!(count, "7");
        assert_eq!(stack.split(';').count(), 5);
    }

    #[test]
    fn empty_stack_still_has_process_and_thread() {
        let mut p = FoldedProfile::new();
        p.add("redis-server", "io_thd_1", &[], 9);
        assert_eq!(p.lines(), vec!["redis-server;io_thd_1 9"]);
    }

    #[test]
    fn top_returns_heaviest_first_with_counts() {
        let mut p = FoldedProfile::new();
        p.add("p", "t", &frames(&["a"]), 10);
        p.add("p", "t", &frames(&["b", "main"]), 30);
        p.add("p", "t", &frames(&["b", "main"]), 30);
        p.add("p", "t", &frames(&["c"]), 10);
        let top = p.top(2);
        assert_eq!(
            top,
            vec![
                TopStack {
                    process: "p".into(),
                    thread: "t".into(),
                    frames: frames(&["b", "main"]),
                    weight_ns: 60,
                    count: 2,
                },
                TopStack {
                    process: "p".into(),
                    thread: "t".into(),
                    frames: frames(&["a"]),
                    weight_ns: 10,
                    count: 1,
                },
            ]
        );
        assert_eq!(p.top(10).len(), 3);
        assert!(FoldedProfile::new().top(3).is_empty());
    }

    #[test]
    fn writes_file_and_reports_path_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.folded");
        let mut p = FoldedProfile::new();
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
    fn entries_are_sorted_with_counts() {
        let mut p = FoldedProfile::new();
        p.add("b", "t", &frames(&["f"]), 1);
        p.add("a", "u", &frames(&["g", "main"]), 2);
        p.add("a", "u", &frames(&["g", "main"]), 3);
        p.add("a", "t", &frames(&[]), 4);
        let got: Vec<(String, String, Vec<String>, u64, u64)> = p
            .entries()
            .into_iter()
            .map(|e| (e.process, e.thread, e.frames, e.weight_ns, e.count))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), "t".into(), vec![], 4, 1),
                ("a".into(), "u".into(), frames(&["g", "main"]), 5, 2),
                ("b".into(), "t".into(), frames(&["f"]), 1, 1),
            ]
        );
    }

    /// The parsing rules of the readers: speedscope takes `^(.*) (\d+)$` and splits on `;`;
    /// flamegraph.pl and inferno take the number after the last space, and a second number
    /// before it (a differential profile) if the stack itself ends in ` <number>`.
    #[test]
    fn lines_parse_in_flamegraph_and_speedscope() {
        let mut p = FoldedProfile::new();
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
