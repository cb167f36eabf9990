//! Blocked-time profiles in pprof's `profile.proto` format (gzipped), for `go tool pprof`.
//!
//! The shape copies Go's own block and mutex profiles, so the usual pprof habits carry over:
//! sample types `contentions/count` and `delay/nanoseconds` (`delay` is the default;
//! `-sample_index=contentions` switches), period type `contentions/count`, period 1.
//!
//! Those two are blocked time only (lock waits, uninterruptible sleep). Idle time (waiting for
//! work or time: Go `select`, channels, `IO wait`, sleeps; a thread's idle waits with
//! `--report-idle`) has sample types of its own, `idle_waits/count` and
//! `idle_delay/nanoseconds` (`-sample_index=idle_delay`), so the default view leads with what
//! blocked; a blocked sample is zero there and an idle one zero in the first two. Every sample
//! also has the label `category` (`lock`, `kernel` or `idle`).
//!
//! One sample per merged stack of the [`BlockedProfile`]. Process and thread become the labels
//! `process` and `thread` instead of root frames (`pprof -tagroot=process,thread` puts them back
//! on top of the stacks); an innermost pseudo-frame such as `[chan receive]` or `[futex]` becomes
//! the label `wait_reason` and is dropped from the stack. Samples of a process in a container also
//! carry `container_id` and, in a Kubernetes pod, `pod_uid` (`pprof -tagfocus=container_id=...`
//! picks one container).
//!
//! Goroutine waits reported one by one (those over `--threshold`) carry the goroutine's pprof
//! labels as string labels under their own keys, as Go's profiles do (`-tagfocus=request_id=r-42`);
//! a goroutine label named like one of observer's ([`RESERVED_LABELS`]) is left out.
//!
//! Frames are already symbolized strings (`name (file:line)`), so functions, files and lines are
//! parsed back out of them; all functions inlined at one address are one Location with one Line
//! each, innermost first, as pprof expects.
//!
//! Frames with a normalized address (module, file offset) get a Mapping per module, with its
//! path and build id. A profile may hold stacks of several processes, each with its own load
//! addresses, so the address space is synthetic, one range per module in Mapping order: module
//! `i` starts at `0x1000_0000 * (i + 1)` (the next multiple of `0x1000_0000` past the previous
//! module when one is larger than that), `Location.address = memory_start + file offset`, and
//! `Mapping.file_offset = 0`, so pprof's own `address - memory_start + file_offset` gives the
//! file offset back (the offset of the looked-up instruction: the pc, or the return address
//! minus one). The main executable's Mapping comes first (pprof prints it as `File:` and
//! `Build ID:`). Mappings say they have functions, files, lines and inline frames, so pprof does
//! not symbolize them again; `-symbolize=force` with the binaries at hand could.
//!
//! Frames without an address (wait reasons, unknown addresses) get a Location without a Mapping
//! whose address is its own id, below every module's range.
//!
//! Output is deterministic: the same profile gives the same bytes (ids follow the sorted order of
//! the stacks, and the gzip header carries no timestamp).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

/// Sample label keys observer sets itself: a goroutine label of the same name is not added.
pub const RESERVED_LABELS: [&str; 6] = [
    "process",
    "thread",
    "category",
    "wait_reason",
    "container_id",
    "pod_uid",
];

use crate::output::profile::{BlockedProfile, StackEntry};
use crate::proc::normaddr::Module;
use crate::stacks::frame::{machine_frames, Frame};

/// Where the synthetic address space starts, and the alignment of each module's range in it.
const MODULE_ALIGN: u64 = 0x1000_0000;

/// What the profile says about where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PprofMeta {
    /// The observed program's executable, as pprof's `File:` line.
    pub main_binary: Option<PathBuf>,
    /// GNU build id of that executable (hex) or Go build id.
    pub build_id: Option<String>,
    /// How long the observation ran.
    pub duration_ns: u64,
    /// Wall-clock start of the observation, nanoseconds since the Unix epoch.
    pub time_nanos: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PprofError {
    #[error("cannot write pprof profile to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Writes `profile` as a gzipped `profile.proto` to `path`.
pub fn write_pprof(
    profile: &BlockedProfile,
    meta: &PprofMeta,
    path: &Path,
) -> Result<(), PprofError> {
    let err = |source| PprofError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = gzip(&build(profile, meta).encode_to_vec()).map_err(err)?;
    use std::io::Write as _;
    crate::output::output_file::create(path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(err)
}

/// The `profile.proto` message for `profile` (not yet encoded).
pub fn build(profile: &BlockedProfile, meta: &PprofMeta) -> proto::Profile {
    let mut b = Builder::default();
    // Index 0 must be the empty string.
    b.string("");
    let contentions = b.string("contentions");
    let count = b.string("count");
    let delay = b.string("delay");
    let nanoseconds = b.string("nanoseconds");
    let process_key = b.string("process");
    let thread_key = b.string("thread");
    let reason_key = b.string("wait_reason");
    let category_key = b.string("category");
    let container_key = b.string("container_id");
    let pod_key = b.string("pod_uid");
    let idle_waits = b.string("idle_waits");
    let idle_delay = b.string("idle_delay");

    let (entries, goroutine_labels): (Vec<StackEntry>, Vec<Vec<(String, String)>>) =
        profile.labeled_entries().into_iter().unzip();
    let layout = Layout::new(&entries, meta);
    let mapping = layout.mappings(&mut b);

    let mut samples = Vec::new();
    for (entry, goroutine_labels) in entries.iter().zip(&goroutine_labels) {
        let mut frames: &[Frame] = &entry.frames;
        let mut label = vec![
            b.label(process_key, &entry.process),
            b.label(thread_key, &entry.thread),
            b.label(category_key, entry.category.as_str()),
        ];
        if let Some(id) = &entry.container.container_id {
            label.push(b.label(container_key, id));
        }
        if let Some(uid) = &entry.container.pod_uid {
            label.push(b.label(pod_key, uid));
        }
        // A goroutine's pprof labels under their own keys, as Go's profiles have them (so
        // `pprof -tagfocus=request_id=r-42` works); one named like observer's own is left out.
        for (k, v) in goroutine_labels {
            if !RESERVED_LABELS.contains(&k.as_str()) {
                let key = b.string(k);
                label.push(b.label(key, v));
            }
        }
        let reason = frames
            .first()
            .filter(|f| f.addr.is_none())
            .and_then(|f| wait_reason(&f.name));
        if let Some(reason) = reason {
            label.push(b.label(reason_key, reason));
            // A stack that is nothing but its wait reason keeps it as a frame, so its delay still
            // shows up under some function in `pprof -top`.
            if frames.len() > 1 {
                frames = &frames[1..];
            }
        }
        let location_id = if frames.is_empty() {
            vec![b.location(&[Frame::named("[unknown]")], &layout)]
        } else {
            machine_frames(frames)
                .map(|run| b.location(run, &layout))
                .collect()
        };
        samples.push(proto::Sample {
            location_id,
            value: if entry.category.is_idle() {
                vec![0, 0, to_i64(entry.count), to_i64(entry.weight_ns)]
            } else {
                vec![to_i64(entry.count), to_i64(entry.weight_ns), 0, 0]
            },
            label,
        });
    }

    let comment = vec![b.string(
        "observer: blocked time per stack (idle time in idle_waits/idle_delay); mapped addresses are module base + file offset \
         (module i based at 0x10000000*(i+1)), not process addresses",
    )];

    proto::Profile {
        sample_type: vec![
            proto::ValueType {
                r#type: contentions,
                unit: count,
            },
            proto::ValueType {
                r#type: delay,
                unit: nanoseconds,
            },
            proto::ValueType {
                r#type: idle_waits,
                unit: count,
            },
            proto::ValueType {
                r#type: idle_delay,
                unit: nanoseconds,
            },
        ],
        sample: samples,
        mapping,
        location: b.locations,
        function: b.functions,
        string_table: b.strings,
        time_nanos: to_i64(meta.time_nanos),
        duration_nanos: to_i64(meta.duration_ns),
        period_type: Some(proto::ValueType {
            r#type: contentions,
            unit: count,
        }),
        period: 1,
        comment,
        default_sample_type: delay,
        ..Default::default()
    }
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    // GzEncoder writes mtime 0 and no file name: the output depends on the input only.
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The wait reason of a pseudo-frame like `[chan receive]`; `[unknown]` is a missing frame, not
/// a reason.
pub(crate) fn wait_reason(frame: &str) -> Option<&str> {
    let inner = frame.strip_prefix('[')?.strip_suffix(']')?;
    let nested = inner.contains('[') || inner.contains(']');
    (!inner.is_empty() && !nested && inner != "unknown").then_some(inner)
}

/// Splits `name (file:line)` or `name (file)`; anything else is all name.
pub(crate) fn parse_frame(frame: &str) -> (&str, &str, i64) {
    let whole = (frame, "", 0);
    let Some(body) = frame.strip_suffix(')') else {
        return whole;
    };
    let Some((name, loc)) = body.rsplit_once(" (") else {
        return whole;
    };
    if name.is_empty() || loc.is_empty() {
        return whole;
    }
    let with_line = loc
        .rsplit_once(':')
        .and_then(|(file, line)| Some((file, line.parse::<i64>().ok()?)))
        .filter(|(file, _)| !file.is_empty());
    if let Some((file, line)) = with_line {
        return (name, file, line);
    }
    // `f (int)` is a signature, `f (bank.c)` a location without a line number.
    if loc.contains('.') || loc.contains('/') {
        (name, loc, 0)
    } else {
        whole
    }
}

/// The synthetic address space: one range per module, the main executable first.
struct Layout {
    /// (module, mapping id, memory start, memory limit), in mapping order.
    modules: Vec<(Arc<Module>, u64, u64, u64)>,
    by_module: HashMap<Arc<Module>, usize>,
    /// The main executable when no frame lies in it: a Mapping without a range, named only.
    main_unmapped: Option<(Option<String>, Option<String>)>,
    main_build_id: Option<String>,
}

impl Layout {
    fn new(entries: &[StackEntry], meta: &PprofMeta) -> Layout {
        let mut extent: BTreeMap<Arc<Module>, u64> = BTreeMap::new();
        for frame in entries.iter().flat_map(|e| &e.frames) {
            if let Some(addr) = &frame.addr {
                let end = extent.entry(Arc::clone(&addr.module)).or_default();
                *end = (*end).max(addr.file_offset);
            }
        }
        let main_path = meta
            .main_binary
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let is_main = |m: &Module| {
            main_path.as_deref() == Some(m.path.as_str())
                || (meta.build_id.is_some() && m.build_id == meta.build_id)
        };
        let mut order: Vec<(Arc<Module>, u64)> = extent.into_iter().collect();
        // Stable: the main executable first, the others by path and build id.
        order.sort_by_key(|(m, _)| !is_main(m));
        let has_main = order.first().is_some_and(|(m, _)| is_main(m));
        let main_unmapped = (!has_main && (main_path.is_some() || meta.build_id.is_some()))
            .then(|| (main_path.clone(), meta.build_id.clone()));

        let first_id = 1 + u64::from(main_unmapped.is_some());
        let mut base = MODULE_ALIGN;
        let mut modules = Vec::with_capacity(order.len());
        let mut by_module = HashMap::with_capacity(order.len());
        for (i, (module, max_offset)) in order.into_iter().enumerate() {
            let start = base;
            let limit = start
                .saturating_add(max_offset)
                .saturating_add(1)
                .saturating_add(0xfff)
                & !0xfff;
            base = limit
                .saturating_add(MODULE_ALIGN - 1)
                .max(start.saturating_add(MODULE_ALIGN))
                / MODULE_ALIGN
                * MODULE_ALIGN;
            by_module.insert(Arc::clone(&module), i);
            modules.push((module, first_id + i as u64, start, limit));
        }
        Layout {
            modules,
            by_module,
            main_unmapped,
            main_build_id: meta.build_id.clone(),
        }
    }

    /// (mapping id, address) of a normalized address.
    fn place(&self, module: &Module, file_offset: u64) -> Option<(u64, u64)> {
        let &i = self.by_module.get(module)?;
        let (_, id, start, _) = &self.modules[i];
        Some((*id, start.saturating_add(file_offset)))
    }

    fn mappings(&self, b: &mut Builder) -> Vec<proto::Mapping> {
        let mut out = Vec::new();
        if let Some((path, build_id)) = &self.main_unmapped {
            out.push(proto::Mapping {
                id: 1,
                filename: path.as_deref().map_or(0, |p| b.string(p)),
                build_id: build_id.as_deref().map_or(0, |id| b.string(id)),
                has_functions: true,
                has_filenames: true,
                has_line_numbers: true,
                ..Default::default()
            });
        }
        for (i, (module, id, start, limit)) in self.modules.iter().enumerate() {
            // The main executable's build id from the session when its file gave none (a Go
            // build id, say).
            let build_id = module.build_id.as_deref().or(self
                .main_build_id
                .as_deref()
                .filter(|_| i == 0 && self.main_unmapped.is_none()));
            out.push(proto::Mapping {
                id: *id,
                memory_start: *start,
                memory_limit: *limit,
                file_offset: 0,
                filename: b.string(&module.path),
                build_id: build_id.map_or(0, |id| b.string(id)),
                has_functions: true,
                has_filenames: true,
                has_line_numbers: true,
                has_inline_frames: true,
            });
        }
        out
    }
}

#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    function_ids: HashMap<(i64, i64), u64>,
    locations: Vec<proto::Location>,
    /// (mapping id, address, names): one address named two ways stays two locations.
    location_ids: HashMap<(u64, u64, Vec<Arc<str>>), u64>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = to_i64(self.strings.len() as u64);
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn label(&mut self, key: i64, value: &str) -> proto::Label {
        proto::Label {
            key,
            str: self.string(value),
            ..Default::default()
        }
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (self.string(name), self.string(file));
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(proto::Function {
            id,
            name: key.0,
            system_name: key.0,
            filename: key.1,
            start_line: 0,
        });
        self.function_ids.insert(key, id);
        id
    }

    /// The Location of one machine frame: `run` is its functions, innermost first, all at one
    /// address (or one frame without an address).
    fn location(&mut self, run: &[Frame], layout: &Layout) -> u64 {
        let placed = run
            .first()
            .and_then(|f| f.addr.as_ref())
            .and_then(|a| layout.place(&a.module, a.file_offset));
        let (mapping_id, address) = placed.unwrap_or((0, 0));
        let key = (
            mapping_id,
            address,
            run.iter().map(|f| Arc::clone(&f.name)).collect::<Vec<_>>(),
        );
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let line = run
            .iter()
            .map(|f| {
                let (name, file, line) = parse_frame(&f.name);
                proto::Line {
                    function_id: self.function(name, file),
                    line,
                    column: 0,
                }
            })
            .collect();
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id,
            address: if placed.is_some() { address } else { id },
            line,
            is_folded: false,
        });
        self.location_ids.insert(key, id);
        id
    }
}

pub mod proto;

#[cfg(test)]
mod tests;
