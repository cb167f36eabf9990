//! Format version 2: profile stacks as normalized addresses plus the symbols that name them.
//!
//! A profile block is one JSON object, complete by itself (so the last whole block of a
//! cut-short recording is enough):
//! - `modules`: the module table, `[{"path", "build_id"}]`;
//! - `symbols`: the symbol table, `[{"module": index, "offset": file offset, "names": [...]}]`,
//!   where `names` is the inline chain at that offset, innermost first (one name when
//!   nothing was inlined there);
//! - `stacks`: `[{"process", "thread", "weight_ns", "count", "frames": [...]}]`, frames
//!   innermost first, each a machine frame: a number is an index into `symbols`, a string is
//!   a frame without an address (a wait reason such as `[futex]`, an unknown address);
//!   `"category": "kernel"|"idle"` when the stack is not a lock wait's (absent: `lock`, as in
//!   recordings made before categories).
//!
//! The names were resolved while the process and its files were at hand; a report needs
//! nothing else. The (build id, file offset) pairs let other tools symbolize again (with
//! debug info fetched by build id) and let pprof show real mappings.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ProfileSnapshot;
use crate::{
    output::profile::{Category, StackEntry},
    proc::normaddr::{Module, NormAddr},
    stacks::frame::{machine_frames, Frame},
};

/// Frames (functions, inlined ones included) in one stack of a file we read back, and in all
/// of them: a small file cannot make the reader allocate without bound through symbols
/// referenced many times.
const MAX_STACK_FRAMES: usize = 4096;
const MAX_TOTAL_FRAMES: usize = 4 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct ProfileV2 {
    elapsed_ns: u64,
    events_dropped: u64,
    agg_dropped: u64,
    modules: Vec<ModuleV2>,
    symbols: Vec<SymbolV2>,
    stacks: Vec<StackV2>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModuleV2 {
    path: String,
    #[serde(default)]
    build_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SymbolV2 {
    module: u32,
    offset: u64,
    names: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StackV2 {
    process: String,
    thread: String,
    weight_ns: u64,
    count: u64,
    frames: Vec<FrameV2>,
    #[serde(default, skip_serializing_if = "is_lock")]
    category: Category,
    /// The process's container and pod; absent outside containers and in older recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod_uid: Option<String>,
}

fn is_lock(c: &Category) -> bool {
    *c == Category::Lock
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum FrameV2 {
    Symbol(u32),
    Name(String),
}

/// Builds the tables while encoding: each module and each (module, offset, names) once.
#[derive(Default)]
struct Tables<'a> {
    modules: Vec<ModuleV2>,
    module_ids: HashMap<&'a Module, u32>,
    symbols: Vec<SymbolV2>,
    symbol_ids: HashMap<(u32, u64, Vec<&'a str>), u32>,
}

impl<'a> Tables<'a> {
    fn module(&mut self, module: &'a Module) -> u32 {
        if let Some(&id) = self.module_ids.get(module) {
            return id;
        }
        let id = index(self.modules.len());
        self.modules.push(ModuleV2 {
            path: module.path.clone(),
            build_id: module.build_id.clone(),
        });
        self.module_ids.insert(module, id);
        id
    }

    /// `run` is one machine frame: its functions share `addr`.
    fn symbol(&mut self, addr: &'a NormAddr, run: &'a [Frame]) -> u32 {
        let module = self.module(&addr.module);
        let names: Vec<&str> = run.iter().map(|f| &*f.name).collect();
        let key = (module, addr.file_offset, names);
        if let Some(&id) = self.symbol_ids.get(&key) {
            return id;
        }
        let id = index(self.symbols.len());
        self.symbols.push(SymbolV2 {
            module,
            offset: addr.file_offset,
            names: key.2.iter().map(|n| n.to_string()).collect(),
        });
        self.symbol_ids.insert(key, id);
        id
    }
}

impl<'a> Tables<'a> {
    /// A stack as machine frames: a symbol index where the code address is known, the
    /// names otherwise.
    fn frames(&mut self, frames: &'a [Frame]) -> Vec<FrameV2> {
        machine_frames(frames)
            .flat_map(|run| match &run[0].addr {
                Some(addr) => vec![FrameV2::Symbol(self.symbol(addr, run))],
                None => run
                    .iter()
                    .map(|f| FrameV2::Name(f.name.to_string()))
                    .collect(),
            })
            .collect()
    }
}

/// Table sizes are bounded by memory long before 2^32 entries.
fn index(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

pub(super) fn encode_profile(snapshot: &ProfileSnapshot) -> Vec<u8> {
    let mut tables = Tables::default();
    let stacks = snapshot
        .stacks
        .iter()
        .map(|s| StackV2 {
            process: s.process.clone(),
            thread: s.thread.clone(),
            weight_ns: s.weight_ns,
            count: s.count,
            frames: tables.frames(&s.frames),
            category: s.category,
            container_id: s.container.container_id.clone(),
            pod_uid: s.container.pod_uid.clone(),
        })
        .collect();
    let profile = ProfileV2 {
        elapsed_ns: snapshot.elapsed_ns,
        events_dropped: snapshot.events_dropped,
        agg_dropped: snapshot.agg_dropped,
        modules: tables.modules,
        symbols: tables.symbols,
        stacks,
    };
    // Plain data with string keys: serde_json cannot fail on it.
    serde_json::to_vec(&profile).unwrap_or_default()
}

pub(super) fn decode_profile(payload: &[u8]) -> Result<ProfileSnapshot, String> {
    let p: ProfileV2 = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let symbols = decode_symbols(p.modules, p.symbols)?;
    let mut total = 0usize;
    let mut stacks = Vec::with_capacity(p.stacks.len());
    for (i, s) in p.stacks.into_iter().enumerate() {
        let frames = decode_frames(&symbols, s.frames, &format!("stack {i}"))?;
        total += frames.len();
        if total > MAX_TOTAL_FRAMES {
            return Err(format!("profile has more than {MAX_TOTAL_FRAMES} frames"));
        }
        stacks.push(StackEntry {
            process: s.process,
            thread: s.thread,
            frames,
            weight_ns: s.weight_ns,
            count: s.count,
            category: s.category,
            // A recording is a file anyone may hand over: ids of the wrong shape are dropped.
            container: crate::proc::container::ContainerIdentity {
                container_id: s
                    .container_id
                    .filter(|id| crate::proc::container::is_container_id(id)),
                pod_uid: s
                    .pod_uid
                    .filter(|uid| crate::proc::container::is_pod_uid(uid)),
            },
        });
    }
    Ok(ProfileSnapshot {
        elapsed_ns: p.elapsed_ns,
        stacks,
        events_dropped: p.events_dropped,
        agg_dropped: p.agg_dropped,
    })
}

/// The symbol table: each entry's inline chain as frames sharing one normalized address.
fn decode_symbols(
    modules: Vec<ModuleV2>,
    symbols: Vec<SymbolV2>,
) -> Result<Vec<Vec<Frame>>, String> {
    let modules: Vec<Arc<Module>> = modules
        .into_iter()
        .map(|m| {
            Arc::new(Module {
                path: m.path,
                build_id: m.build_id,
            })
        })
        .collect();
    symbols
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let module = modules
                .get(s.module as usize)
                .ok_or_else(|| format!("symbol {i} names module {}, not in the table", s.module))?;
            if s.names.is_empty() {
                return Err(format!("symbol {i} has no names"));
            }
            let addr = NormAddr {
                module: Arc::clone(module),
                file_offset: s.offset,
            };
            let last = s.names.len() - 1;
            Ok(s.names
                .into_iter()
                .enumerate()
                .map(|(j, name)| Frame {
                    name: Arc::from(name),
                    addr: Some(addr.clone()),
                    inlined: j < last,
                })
                .collect::<Vec<Frame>>())
        })
        .collect()
}

/// One stack's frames; `what` names it in errors.
fn decode_frames(
    symbols: &[Vec<Frame>],
    encoded: Vec<FrameV2>,
    what: &str,
) -> Result<Vec<Frame>, String> {
    let mut frames = Vec::with_capacity(encoded.len());
    for f in encoded {
        match f {
            FrameV2::Symbol(id) => {
                let run = symbols
                    .get(id as usize)
                    .ok_or_else(|| format!("{what} names symbol {id}, not in the table"))?;
                frames.extend(run.iter().cloned());
            }
            FrameV2::Name(name) => frames.push(Frame::named(name)),
        }
        if frames.len() > MAX_STACK_FRAMES {
            return Err(format!("{what} has more than {MAX_STACK_FRAMES} frames"));
        }
    }
    Ok(frames)
}

/// An alert-frames block: the frames behind the stacks of the `alert`-th alert of the file
/// (counting from 0), with their own module and symbol tables.
#[derive(Debug, Serialize, Deserialize)]
struct AlertFramesV2 {
    alert: u64,
    modules: Vec<ModuleV2>,
    symbols: Vec<SymbolV2>,
    stacks: Vec<FieldFramesV2>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FieldFramesV2 {
    field: String,
    frames: Vec<FrameV2>,
}

pub(super) fn encode_alert_frames(alert: usize, stacks: &[(String, Vec<Frame>)]) -> Vec<u8> {
    let mut tables = Tables::default();
    let stacks = stacks
        .iter()
        .map(|(field, frames)| FieldFramesV2 {
            field: field.clone(),
            frames: tables.frames(frames),
        })
        .collect();
    let block = AlertFramesV2 {
        alert: alert as u64,
        modules: tables.modules,
        symbols: tables.symbols,
        stacks,
    };
    // Plain data with string keys: serde_json cannot fail on it.
    serde_json::to_vec(&block).unwrap_or_default()
}

/// Stack fields per alert are a handful; more is not a recording observer wrote.
const MAX_ALERT_STACKS: usize = 64;

/// The alert's index in the file and its stacks' frames.
pub(super) type AlertFrames = (usize, Vec<(String, Vec<Frame>)>);

pub(super) fn decode_alert_frames(payload: &[u8]) -> Result<AlertFrames, String> {
    let b: AlertFramesV2 = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if b.stacks.len() > MAX_ALERT_STACKS {
        return Err(format!("more than {MAX_ALERT_STACKS} stacks for one alert"));
    }
    let alert =
        usize::try_from(b.alert).map_err(|_| format!("alert index {} out of range", b.alert))?;
    let symbols = decode_symbols(b.modules, b.symbols)?;
    let stacks = b
        .stacks
        .into_iter()
        .map(|s| {
            let frames = decode_frames(&symbols, s.frames, &format!("alert stack {}", s.field))?;
            Ok((s.field, frames))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((alert, stacks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str, id: Option<&str>) -> Arc<Module> {
        Arc::new(Module {
            path: path.into(),
            build_id: id.map(str::to_string),
        })
    }

    fn at(name: &str, m: &Arc<Module>, off: u64, inlined: bool) -> Frame {
        Frame::at(name, m, off, inlined)
    }

    fn snapshot() -> ProfileSnapshot {
        let exe = module("/usr/bin/bank", Some("abcd"));
        let libc = module("/usr/lib/libc.so.6", None);
        let lock_wait = vec![
            Frame::named("[futex]"),
            at("__lll_lock_wait", &libc, 0x8b1a4, false),
            at("inlined_helper (bank.c:9)", &exe, 0x1234, true),
            at("transfer (bank.c:14)", &exe, 0x1234, false),
            Frame::named("[unknown] 0x7f0012345678"),
        ];
        let other = vec![
            at("__lll_lock_wait", &libc, 0x8b1a4, false),
            at("main (bank.c:30)", &exe, 0x2000, false),
            at("main (bank.c:30)", &exe, 0x2000, false),
        ];
        ProfileSnapshot {
            elapsed_ns: 5,
            stacks: vec![
                StackEntry {
                    process: "bank".into(),
                    thread: "worker".into(),
                    frames: lock_wait,
                    weight_ns: 300,
                    count: 2,
                    category: Category::Lock,
                    container: Default::default(),
                },
                StackEntry {
                    process: "bank".into(),
                    thread: "main".into(),
                    frames: other,
                    weight_ns: 7,
                    count: 1,
                    category: Category::Idle,
                    container: Default::default(),
                },
            ],
            events_dropped: 3,
            agg_dropped: 4,
        }
    }

    #[test]
    fn round_trip_with_tables() {
        let s = snapshot();
        let bytes = encode_profile(&s);
        let back = decode_profile(&bytes).unwrap();
        assert_eq!(back, s);

        let raw: ProfileV2 = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(raw.modules.len(), 2);
        // __lll_lock_wait once though used twice; the inline chain is one symbol of 2 names;
        // the recursive main is one symbol used twice.
        assert_eq!(raw.symbols.len(), 3, "{raw:?}");
        let chain = raw.symbols.iter().find(|s| s.offset == 0x1234).unwrap();
        assert_eq!(
            chain.names,
            vec!["inlined_helper (bank.c:9)", "transfer (bank.c:14)"]
        );
        assert_eq!(raw.stacks[0].frames.len(), 4);
        // Lock stacks need no category field (as recordings made before categories).
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches("\"category\"").count(), 1, "{text}");
        assert!(text.contains("\"category\":\"idle\""), "{text}");
        assert!(matches!(&raw.stacks[0].frames[0], FrameV2::Name(n) if n == "[futex]"));
        assert!(matches!(
            raw.stacks[1].frames[..],
            [FrameV2::Symbol(_), FrameV2::Symbol(a), FrameV2::Symbol(b)] if a == b
        ));
    }

    #[test]
    fn one_address_with_two_namings_keeps_both() {
        // Two processes mapping one file may name an address differently (pclntab vs
        // symbol table): each stack keeps its own names.
        let exe = module("/bin/go-app", None);
        let mut s = snapshot();
        s.stacks = vec![
            StackEntry {
                process: "a".into(),
                thread: "t".into(),
                frames: vec![at("main.f (x.go:1)", &exe, 0x10, false)],
                weight_ns: 1,
                count: 1,
                category: Category::Lock,
                container: Default::default(),
            },
            StackEntry {
                process: "b".into(),
                thread: "t".into(),
                frames: vec![at("go-app+0x10", &exe, 0x10, false)],
                weight_ns: 1,
                count: 1,
                category: Category::Lock,
                container: Default::default(),
            },
        ];
        assert_eq!(decode_profile(&encode_profile(&s)).unwrap(), s);
    }

    /// Stacks keep their process's container and pod; a recording without them (older) reads
    /// as outside containers, and ids of the wrong shape in a handed-over file are dropped.
    #[test]
    fn container_and_pod_of_stacks() {
        let id = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
        let uid = "8f9b2c4e-1d3a-4b5c-9e7f-0a1b2c3d4e5f";
        let mut s = snapshot();
        s.stacks[0].container = crate::proc::container::ContainerIdentity {
            container_id: Some(id.into()),
            pod_uid: Some(uid.into()),
        };
        let bytes = encode_profile(&s);
        assert!(String::from_utf8_lossy(&bytes).contains(&format!(r#""container_id":"{id}""#)));
        assert_eq!(decode_profile(&bytes).unwrap(), s);
        let old = payload("[]", r#"["n"]"#);
        let read = decode_profile(&old).unwrap();
        assert!(read.stacks[0].container.is_none());
        let forged = String::from_utf8(old).unwrap().replace(
            r#""process":"p""#,
            r#""process":"p","container_id":"x\u001b[31m","pod_uid":"nope""#,
        );
        let read = decode_profile(forged.as_bytes()).unwrap();
        assert!(read.stacks[0].container.is_none());
    }

    fn payload(symbols: &str, frames: &str) -> Vec<u8> {
        format!(
            r#"{{"elapsed_ns":1,"events_dropped":0,"agg_dropped":0,
               "modules":[{{"path":"/x","build_id":null}}],
               "symbols":{symbols},
               "stacks":[{{"process":"p","thread":"t","weight_ns":1,"count":1,"frames":{frames}}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn bad_references_are_errors() {
        let ok = payload(r#"[{"module":0,"offset":5,"names":["f"]}]"#, r#"[0,"n"]"#);
        assert!(decode_profile(&ok).is_ok());
        for (symbols, frames, want) in [
            (
                r#"[{"module":1,"offset":5,"names":["f"]}]"#,
                "[0]",
                "module 1",
            ),
            (r#"[{"module":0,"offset":5,"names":[]}]"#, "[0]", "no names"),
            (
                r#"[{"module":0,"offset":5,"names":["f"]}]"#,
                "[1]",
                "symbol 1",
            ),
            (
                r#"[{"module":0,"offset":5,"names":["f"]}]"#,
                "[-1]",
                "untagged",
            ),
            (
                r#"[{"module":0,"offset":5,"names":["f"]}]"#,
                "[1.5]",
                "untagged",
            ),
            (r#"[{"module":0,"offset":-5,"names":["f"]}]"#, "[0]", "-5"),
            (r#"{}"#, "[0]", "sequence"),
        ] {
            let err = decode_profile(&payload(symbols, frames)).unwrap_err();
            assert!(err.contains(want), "{symbols} {frames}: {err}");
        }
        assert!(decode_profile(b"").is_err());
        assert!(decode_profile(b"[]").is_err());
    }

    #[test]
    fn expansion_is_bounded() {
        let names = vec!["\"f\""; 64].join(",");
        let symbols = format!(r#"[{{"module":0,"offset":5,"names":[{names}]}}]"#);
        // 100 references to a 64-name chain: 6400 frames in one stack.
        let frames = format!("[{}]", vec!["0"; 100].join(","));
        let err = decode_profile(&payload(&symbols, &frames)).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        let fine = format!("[{}]", vec!["0"; 60].join(","));
        let p = decode_profile(&payload(&symbols, &fine)).unwrap();
        assert_eq!(p.stacks[0].frames.len(), 3840);
    }
}
