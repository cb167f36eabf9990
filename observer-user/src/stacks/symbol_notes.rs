//! The once-per-binary line that a binary in a stack has no symbols, and how to get them.
//!
//! Without it a stripped distribution binary (memcached, mariadbd) gives stacks of
//! `memcached+0x1234` and nothing says why or what to install. Lines are bounded: one per
//! binary, at most [`MAX_SYMBOL_NOTES`] per run.

use std::path::Path;

use crate::proc::objectfile::ObjectFile;

/// Binaries checked for symbols before observer stops checking new ones.
const MAX_SYMBOL_CHECKS: usize = 4096;
/// "No symbols" lines said per run; one more line says when others are not listed.
const MAX_SYMBOL_NOTES: usize = 8;

/// Says once per binary, on stderr, that a binary whose code appears in a stack has nothing
/// that names its functions, and how to get names; at most [`MAX_SYMBOL_NOTES`] lines a run.
pub(crate) struct SymbolNotes<K> {
    checked: std::collections::HashSet<K>,
    said: usize,
}

impl<K> Default for SymbolNotes<K> {
    fn default() -> Self {
        SymbolNotes {
            checked: Default::default(),
            said: 0,
        }
    }
}

/// `K` names a binary's contents (a build id, a file identity).
impl<K: std::hash::Hash + Eq> SymbolNotes<K> {
    /// Says (once per binary, bounded) that `object` has no symbols, if it has none.
    pub(crate) fn check(&mut self, key: K, object: &ObjectFile) {
        if let Some(line) = self.note(key, || object.lacks_symbols(), || no_symbols_line(object)) {
            crate::say!("{line}");
        }
    }

    /// The line to say for the binary `key`, if any: `lacks` tells whether it has no symbols
    /// (asked once per binary), `line` what to say about it.
    fn note(
        &mut self,
        key: K,
        lacks: impl FnOnce() -> bool,
        line: impl FnOnce() -> String,
    ) -> Option<String> {
        if self.said > MAX_SYMBOL_NOTES
            || self.checked.len() >= MAX_SYMBOL_CHECKS
            || !self.checked.insert(key)
            || !lacks()
        {
            return None;
        }
        self.said += 1;
        if self.said > MAX_SYMBOL_NOTES {
            return Some("observer: more binaries without symbols are not listed".into());
        }
        Some(line())
    }
}

/// What to say about a binary without symbols: which one, what its frames look like, and where
/// names would come from.
fn no_symbols_line(object: &ObjectFile) -> String {
    const MAX_PATH_CHARS: usize = 200;
    let path = object.path().to_string_lossy();
    let shown: String = path.chars().take(MAX_PATH_CHARS).collect();
    let ellipsis = if shown.len() < path.len() { "..." } else { "" };
    let place = object
        .build_id()
        .and_then(|id| {
            crate::proc::debugfile::build_id_path(Path::new(crate::proc::debugfile::DEBUG_DIR), id)
        })
        .map(|p| format!(" or place its debug file at {}", p.display()))
        .unwrap_or_else(|| " or use a build that is not stripped (it has no build id)".into());
    format!(
        "observer: {shown}{ellipsis} has no symbols (stripped, no debug file found): its frames \
         show as {}+0x...; for names install its debug symbols (Debian: its -dbgsym package, \
         Fedora: -debuginfo){place}",
        object.file_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(n: u8) -> Arc<[u8]> {
        Arc::from([n; 20])
    }

    #[test]
    fn one_line_per_binary_and_a_bounded_number_per_run() {
        let mut notes: SymbolNotes<Arc<[u8]>> = SymbolNotes::default();
        let say = |notes: &mut SymbolNotes<Arc<[u8]>>, n: u8, lacks: bool| {
            notes.note(key(n), || lacks, || format!("binary {n}"))
        };
        assert_eq!(say(&mut notes, 0, true).as_deref(), Some("binary 0"));
        assert_eq!(say(&mut notes, 0, true), None, "once per binary");
        assert_eq!(say(&mut notes, 1, false), None, "it has symbols");
        let lines: Vec<String> = (2..40).filter_map(|n| say(&mut notes, n, true)).collect();
        assert_eq!(lines.len(), MAX_SYMBOL_NOTES, "{lines:?}");
        assert!(
            lines.last().is_some_and(|l| l.contains("not listed")),
            "{lines:?}"
        );
        // Binaries are asked about once, and not at all once the lines are used up.
        let mut asked = false;
        assert_eq!(
            notes.note(
                key(99),
                || {
                    asked = true;
                    true
                },
                String::new
            ),
            None
        );
        assert!(!asked);
    }
}
