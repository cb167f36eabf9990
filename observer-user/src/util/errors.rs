//! How errors read at the binary's edge.
//!
//! Our error types say `"...: {source}"` and also return the source from `source()`, and so do
//! those of our dependencies: printing the whole chain (anyhow's `{:#}`) then repeated every
//! cause ("Is a directory (os error 21): Is a directory (os error 21)"). [`render_chain`]
//! prints each cause once: a cause whose text is already in what was printed is skipped.

use std::{error::Error, io};

/// The messages of an error chain, outermost first, joined by ": ", each cause once.
pub fn render_chain<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut out = String::new();
    for e in chain {
        let text = e.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// An I/O error as a person reads it: "No such file or directory", without "(os error 2)".
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => text[..i].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write flame graph to {path}: {source}")]
    struct Outer {
        path: String,
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    enum Transparentish {
        #[error("{0}")]
        Io(#[from] io::Error),
    }

    fn chain_of(e: &anyhow::Error) -> String {
        render_chain(e.chain())
    }

    #[test]
    fn every_cause_appears_once() {
        let eisdir = || io::Error::from_raw_os_error(libc::EISDIR);
        let e = anyhow::Error::new(Outer {
            path: "/tmp/x".into(),
            source: eisdir(),
        })
        .context("writing outputs");
        assert_eq!(
            chain_of(&e),
            "writing outputs: cannot write flame graph to /tmp/x: Is a directory (os error 21)"
        );
        // anyhow's own rendering repeats the cause: what the user saw before.
        assert_eq!(format!("{e:#}").matches("Is a directory").count(), 2);

        let e = anyhow::Error::new(Transparentish::from(eisdir())).context("reading /tmp");
        assert_eq!(chain_of(&e), "reading /tmp: Is a directory (os error 21)");
        let e = anyhow::anyhow!("plain");
        assert_eq!(chain_of(&e), "plain");
    }

    #[test]
    fn io_reasons_read_like_a_shell() {
        assert_eq!(
            io_reason(&io::Error::from_raw_os_error(libc::ENOENT)),
            "No such file or directory"
        );
        assert_eq!(io_reason(&io::Error::other("custom")), "custom");
    }
}
