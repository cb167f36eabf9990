//! The layout rules of `observer-user/src` (README "Architecture"), checked on every test run so
//! that an arrow pointing back up the pipeline fails CI instead of creeping in.
//!
//! - each top-level folder imports only the folders below it ([`MAY_IMPORT`]);
//! - no import cycle between the files of one folder;
//! - only `kernel/` names aya;
//! - no source file over [`MAX_LINES`] lines (files holding only tests aside);
//! - at most [`MAX_LOOSE_FILES`] loose `.rs` files at the top of `src/`.
//!
//! Imports are read from the source text (`crate::a::b`, `crate::{a::b, c}`), with comments and
//! string literals removed first: enough for this crate's style, and a test, not a parser.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Who may import whom: a folder (or top-level file) and the folders it may name.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("kernel", &["util"]),
    ("proc", &["util"]),
    ("golang", &["proc", "util"]),
    ("stacks", &["golang", "proc", "util"]),
    ("detect", &["golang", "stacks", "proc", "util"]),
    ("output", &["detect", "golang", "stacks", "proc", "util"]),
    (
        "terminal",
        &["output", "detect", "golang", "stacks", "proc", "util"],
    ),
    (
        "session",
        &[
            "kernel", "terminal", "output", "detect", "golang", "stacks", "proc", "util",
        ],
    ),
    // The command line parses into the types of the stages it configures (formats, filters).
    (
        "cli",
        &[
            "terminal", "output", "detect", "golang", "stacks", "proc", "util",
        ],
    ),
    (
        "main",
        &[
            "cli", "session", "kernel", "terminal", "output", "detect", "golang", "stacks", "proc",
            "util",
        ],
    ),
    ("lib", &[]),
];

const MAX_LINES: usize = 800;
const MAX_LOOSE_FILES: usize = 10;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/`-relative path components of a file.
fn parts(file: &Path) -> Vec<String> {
    file.strip_prefix(src_dir())
        .unwrap()
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect()
}

/// The top-level module a file belongs to: its folder, or its own name for `lib.rs`, `main.rs`...
fn top_module(file: &Path) -> String {
    let p = parts(file);
    p[0].trim_end_matches(".rs").to_string()
}

/// The source with comments, string and char literals blanked (line numbers kept).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = src[i + body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[2] == b'\'' || rest[1] == b'\\') {
            // A char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote nearby.
            let end = rest[2..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(1, |e| e + 3);
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path named after `crate::` in `code`, as (line, segments), with `crate::{a::b, c}`
/// groups expanded one level.
fn crate_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `observer_crate::`
        }
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push((line, segments(&item)));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.push((line, segments(&item)));
        } else {
            found.push((line, segments(rest)));
        }
    }
    found.retain(|(_, s)| !s.is_empty());
    found
}

/// `a::b::{c, d}` -> `["a", "b"]`.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path.trim_start();
    loop {
        let id = ident_at(rest);
        if id.is_empty() {
            break;
        }
        out.push(id.to_string());
        rest = &rest[id.len()..];
        match rest.trim_start().strip_prefix("::") {
            Some(r) => rest = r.trim_start(),
            None => break,
        }
    }
    out
}

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    MAY_IMPORT
        .iter()
        .map(|(from, to)| (*from, to.iter().copied().collect()))
        .collect()
}

#[test]
fn the_rule_itself_points_one_way() {
    // A folder may only import folders listed before it in MAY_IMPORT: the order is the layering.
    let order: Vec<&str> = MAY_IMPORT.iter().map(|(f, _)| *f).collect();
    for (i, (from, to)) in MAY_IMPORT.iter().enumerate() {
        for t in *to {
            let j = order.iter().position(|o| o == t).unwrap();
            assert!(j < i, "{from} may import {t}, which is not below it");
        }
    }
}

#[test]
fn folders_import_only_the_folders_below_them() {
    let rules = allowed();
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let from = top_module(file);
        let Some(may) = rules.get(from.as_str()) else {
            wrong.push(format!(
                "{}: top-level module `{from}` is not in MAY_IMPORT (add it with its place in the pipeline)",
                file.display()
            ));
            continue;
        };
        let code = code_only(&fs::read_to_string(file).unwrap());
        for (line, path) in crate_paths(&code) {
            let to = path[0].as_str();
            if to == from || to == "say" || !rules.contains_key(to) {
                continue; // own folder, the `crate::say!` macro, or an item of lib.rs
            }
            if !may.contains(to) {
                wrong.push(format!(
                    "{}:{line}: {from} -> crate::{} (allowed: {may:?})",
                    parts(file).join("/"),
                    path.join("::")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

/// Sibling files of one folder, and which siblings each names.
fn sibling_graph(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let module_of = |f: &Path| -> Option<String> {
        let rel: Vec<_> = f
            .strip_prefix(dir)
            .unwrap()
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let first = rel[0].trim_end_matches(".rs").to_string();
        (first != "mod" && first != "tests").then_some(first)
    };
    let siblings: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(me) = module_of(f) else { continue };
        let code = code_only(&fs::read_to_string(f).unwrap());
        let mut named = BTreeSet::new();
        for (_, path) in crate_paths(&code) {
            if path.len() > 1 && path[0] == folder {
                named.insert(path[1].clone());
            }
        }
        // `super::x` from a direct child of the folder names sibling x.
        if f.parent() == Some(dir) {
            let mut from = 0;
            while let Some(at) = code[from..].find("super::") {
                from += at + "super::".len();
                named.insert(ident_at(&code[from..]).to_string());
            }
        }
        let entry = graph.entry(me.clone()).or_default();
        for n in named {
            if n != me && siblings.contains(&n) {
                entry.insert(n);
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == node).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_cycle_between_the_files_of_a_folder() {
    let mut dirs = vec![src_dir()];
    let mut cycles = Vec::new();
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
        if dir == src_dir() {
            continue;
        }
        if let Some(c) = find_cycle(&sibling_graph(&dir)) {
            cycles.push(format!("{}: {}", dir.display(), c.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_kernel_folder_names_aya() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let users: Vec<String> = files
        .iter()
        .filter(|f| top_module(f) != "kernel")
        .filter(|f| {
            let code = code_only(&fs::read_to_string(f).unwrap());
            code.contains("aya::") || code.contains("aya_log::") || code.contains("use aya")
        })
        .map(|f| parts(f).join("/"))
        .collect();
    assert!(users.is_empty(), "aya named outside kernel/: {users:?}");
}

#[test]
fn no_source_file_is_over_the_size_limit() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let big: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("tests.rs") && !parts(f).contains(&"tests".to_string()))
        .filter_map(|f| {
            let n = fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", parts(f).join("/")))
        })
        .collect();
    assert!(big.is_empty(), "files over {MAX_LINES} lines: {big:?}");
}

#[test]
fn few_loose_files_at_the_top() {
    let loose: Vec<_> = fs::read_dir(src_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    assert!(
        loose.len() <= MAX_LOOSE_FILES,
        "{} loose files: {loose:?}",
        loose.len()
    );
}

#[test]
fn the_import_reader_sees_grouped_and_plain_paths() {
    let code = code_only(
        "use crate::a::b;\n// crate::commented::out\nlet s = \"crate::in_string\";\nuse crate::{c::d, e::{f, g}, self};\nlet c = '\"'; crate::h::i();",
    );
    let firsts: Vec<String> = crate_paths(&code)
        .into_iter()
        .map(|(_, s)| s[0].clone())
        .collect();
    assert_eq!(firsts, ["a", "c", "e", "self", "h"]);
}
