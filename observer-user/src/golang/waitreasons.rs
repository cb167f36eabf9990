//! `runtime.waitReasonStrings`: the text of each `waitReason` number, which moves between
//! versions, read from the binary itself.
//!
//! With `.symtab`, the symbol gives the array and its length. Without it, the array is found
//! by its second entry, "GC assist marking" (index 1 in every version): a `{ptr, 17}` string
//! header in the data pointing at those bytes. Its end is the first entry that does not look
//! like a wait reason, cut to the table's length for versions the table knows. Last resort:
//! the table itself (strings as measured from each toolchain).

use super::buildinfo::GoVersion;
use super::elf::{le64, ElfImage, Section};

const ANCHOR: &[u8] = b"GC assist marking";
/// No wait reason is longer (the longest is ~40 bytes).
const MAX_REASON_LEN: u64 = 64;
/// More than any version has (1.27: 47).
const MAX_REASONS: usize = 96;

/// How the strings were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReasonSource {
    Symbol,
    Scan,
    Table,
    TableNearest,
    None,
}

pub(crate) fn wait_reasons(elf: &ElfImage, version: &GoVersion) -> (Vec<String>, ReasonSource) {
    if let Some(reasons) = from_symbol(elf) {
        return (reasons, ReasonSource::Symbol);
    }
    let known = table(version);
    if let Some(mut reasons) = from_scan(elf) {
        if let Some((table, true)) = known {
            reasons.truncate(table.len());
        }
        return (reasons, ReasonSource::Scan);
    }
    match known {
        Some((t, exact)) => (
            t.iter().map(|s| (*s).to_string()).collect(),
            if exact {
                ReasonSource::Table
            } else {
                ReasonSource::TableNearest
            },
        ),
        None => (Vec::new(), ReasonSource::None),
    }
}

fn from_symbol(elf: &ElfImage) -> Option<Vec<String>> {
    let sym = elf.symbols.get("runtime.waitReasonStrings")?;
    let count = usize::try_from(sym.size / 16).ok()?.min(MAX_REASONS);
    let bytes = elf.read_vaddr(sym.addr, count as u64 * 16)?;
    (0..count)
        .map(|i| read_string(elf, &bytes, sym.addr, i))
        .collect()
}

/// Entry `i` of an array of string headers (`bytes` = file contents at `base`).
fn read_string(elf: &ElfImage, bytes: &[u8], base: u64, i: usize) -> Option<String> {
    let ptr = elf.ptr_word(bytes, base, 2 * i);
    let len = le64(bytes, 16 * i + 8);
    if len == 0 {
        return Some(String::new());
    }
    if len > MAX_REASON_LEN {
        return None;
    }
    String::from_utf8(elf.read_vaddr(ptr, len)?).ok()
}

fn looks_like_reason(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" .()-_/".contains(&b))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
}

pub(crate) fn from_scan(elf: &ElfImage) -> Option<Vec<String>> {
    let readonly: Vec<&Section> = elf
        .sections
        .iter()
        .filter(|s| !s.writable && s.file_range.is_some() && s.addr != 0)
        .filter(|s| s.name != ".gopclntab" && s.name != ".text")
        .collect();
    let mut anchors = Vec::new();
    for section in readonly {
        let Ok(bytes) = elf.section_bytes(section) else {
            continue;
        };
        let mut from = 0;
        while let Some(pos) = find(&bytes[from..], ANCHOR) {
            anchors.push(section.addr + (from + pos) as u64);
            from += pos + 1;
        }
    }
    for section in elf.sections.iter().filter(|s| s.writable) {
        let Ok(bytes) = elf.section_bytes(section) else {
            continue;
        };
        let words = bytes.len() / 8;
        for i in 0..words.saturating_sub(1) {
            if le64(&bytes, 8 * i + 8) != ANCHOR.len() as u64 {
                continue;
            }
            if !anchors.contains(&elf.ptr_word(&bytes, section.addr, i)) {
                continue;
            }
            // Entry 1 found: entry 0 ("") starts 16 bytes earlier.
            let Some(start) = i.checked_sub(2) else {
                continue;
            };
            if le64(&bytes, 8 * start + 8) != 0 {
                continue;
            }
            let mut reasons = vec![String::new()];
            let base = section.addr + 8 * start as u64;
            let slice = &bytes[8 * start..];
            for entry in 1..MAX_REASONS {
                match read_string(elf, slice, base, entry) {
                    Some(s) if looks_like_reason(&s) => reasons.push(s),
                    _ => break,
                }
            }
            return Some(reasons);
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The measured array for `version` (exact), or the nearest measured one (`false`).
pub(crate) fn table(version: &GoVersion) -> Option<(&'static [&'static str], bool)> {
    if version.major != 1 {
        return None;
    }
    let (minor, strings) = TABLES
        .iter()
        .rev()
        .find(|(m, _)| *m <= version.minor)
        .or_else(|| TABLES.first())?;
    Some((strings, *minor == version.minor))
}

/// `runtime.waitReasonStrings` as read from binaries built by each toolchain (go1.19.8,
/// 1.21.13, 1.22.10, 1.23.9, 1.24.11, 1.25.5, 1.26.6, 1.27.3).
const TABLES: &[(u32, &[&str])] = &[
    (19, GO1_19),
    (21, GO1_21),
    (22, GO1_22),
    (23, GO1_23),
    (24, GO1_24),
    (25, GO1_25),
    (26, GO1_26),
    (27, GO1_26),
];

const GO1_19: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "timer goroutine (idle)",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "preempted",
    "debug call",
];

const GO1_21: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "GC worker (active)",
    "preempted",
    "debug call",
    "GC mark termination",
    "stopping the world",
];

const GO1_22: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "GC worker (active)",
    "preempted",
    "debug call",
    "GC mark termination",
    "stopping the world",
    "flushing proc caches",
    "trace goroutine status",
    "trace proc status",
    "page trace flush",
    "coroutine",
];

const GO1_23: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "GC worker (active)",
    "preempted",
    "debug call",
    "GC mark termination",
    "stopping the world",
    "flushing proc caches",
    "trace goroutine status",
    "trace proc status",
    "page trace flush",
    "coroutine",
    "GC weak to strong wait",
];

const GO1_24: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "sync.WaitGroup.Wait",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "GC worker (active)",
    "preempted",
    "debug call",
    "GC mark termination",
    "stopping the world",
    "flushing proc caches",
    "trace goroutine status",
    "trace proc status",
    "page trace flush",
    "coroutine",
    "GC weak to strong wait",
    "synctest.Run",
    "synctest.Wait",
    "chan receive (synctest)",
    "chan send (synctest)",
    "select (synctest)",
];

const GO1_25: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "GOMAXPROCS updater (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "sync.WaitGroup.Wait",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "GC worker (active)",
    "preempted",
    "debug call",
    "GC mark termination",
    "stopping the world",
    "flushing proc caches",
    "trace goroutine status",
    "trace proc status",
    "page trace flush",
    "coroutine",
    "GC weak to strong wait",
    "synctest.Run",
    "synctest.Wait",
    "chan receive (durable)",
    "chan send (durable)",
    "select (durable)",
    "sync.WaitGroup.Wait (durable)",
    "cleanup wait",
];

const GO1_26: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "finalizer wait",
    "force gc (idle)",
    "GOMAXPROCS updater (idle)",
    "semacquire",
    "sleep",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "select (no cases)",
    "select",
    "chan receive",
    "chan send",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "sync.WaitGroup.Wait",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "GC worker (active)",
    "preempted",
    "debug call",
    "GC mark termination",
    "stopping the world",
    "flushing proc caches",
    "trace goroutine status",
    "trace proc status",
    "page trace flush",
    "coroutine",
    "GC weak to strong wait",
    "synctest.Run",
    "synctest.Wait",
    "chan receive (durable)",
    "chan send (durable)",
    "select (durable)",
    "sync.WaitGroup.Wait (durable)",
    "cleanup wait",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_by_version() {
        let v = |minor| GoVersion {
            major: 1,
            minor,
            patch: 0,
            raw: String::new(),
        };
        let (t19, exact) = table(&v(19)).unwrap();
        assert!(exact);
        assert_eq!(t19[1], "GC assist marking");
        assert!(t19.contains(&"semacquire") && !t19.contains(&"sync.Mutex.Lock"));
        let (t27, exact) = table(&v(27)).unwrap();
        assert!(exact);
        assert_eq!(t27.iter().position(|s| *s == "sync.Mutex.Lock"), Some(22));
        assert_eq!(table(&v(20)).map(|(_, exact)| exact), Some(false));
        assert_eq!(table(&v(17)).map(|(t, _)| t.len()), Some(t19.len()));
        for (_, t) in TABLES {
            assert!(t[1..].iter().all(|s| looks_like_reason(s)), "{t:?}");
        }
    }

    #[test]
    fn reason_shapes() {
        assert!(looks_like_reason("chan receive (nil chan)"));
        assert!(looks_like_reason("sync.Mutex.Lock"));
        assert!(looks_like_reason("GC worker (idle)"));
        assert!(!looks_like_reason(""));
        assert!(!looks_like_reason("\u{1}abc"));
        assert!(!looks_like_reason("0x12"));
        assert_eq!(find(b"xxGC assist marking", ANCHOR), Some(2));
    }
}
