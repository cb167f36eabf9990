//! Finding (or mounting) tracefs, and reading tracepoint record layouts from it.
//!
//! Attaching a tracepoint program needs the event's id from `events/<category>/<event>/id`, and
//! reading a raw tracepoint record needs field offsets from the event's `format` file; both live in
//! tracefs, which some systems do not mount at boot. [`ensure_tracefs`] finds it in `/proc/mounts`,
//! mounts it at `/sys/kernel/tracing` if needed, and otherwise says exactly what to run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where tracefs is mounted by convention; also where we mount it.
pub const TRACEFS_MOUNT_POINT: &str = "/sys/kernel/tracing";
const LEGACY_MOUNT_POINT: &str = "/sys/kernel/debug/tracing";
const MOUNT_HINT: &str = "mount -t tracefs tracefs /sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it at {TRACEFS_MOUNT_POINT} failed: {source}. \
         observer needs tracefs to attach tracepoints and read their record layouts; \
         run as root: `{MOUNT_HINT}`"
    )]
    MountFailed { source: io::Error },
    #[error(
        "tracefs is not mounted and {TRACEFS_MOUNT_POINT} does not exist (kernel without \
         CONFIG_TRACING, or /sys not mounted?). observer needs tracefs to attach tracepoints; \
         mount sysfs, then run as root: `{MOUNT_HINT}`"
    )]
    NoMountPoint,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("tracepoint {category}:{event} has no field {field:?} in {path}")]
    FieldNotFound {
        category: String,
        event: String,
        field: String,
        path: PathBuf,
    },
}

/// Returns the tracefs mount point, mounting tracefs at `/sys/kernel/tracing` if it is not mounted.
pub fn ensure_tracefs() -> Result<PathBuf, TracefsError> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    if let Some(p) = find_tracefs_mount(&mounts) {
        return Ok(p);
    }
    // /proc/mounts can be unreadable or from another mount namespace; trust a visible events tree.
    for dir in [TRACEFS_MOUNT_POINT, LEGACY_MOUNT_POINT] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    if !Path::new(TRACEFS_MOUNT_POINT).is_dir() {
        return Err(TracefsError::NoMountPoint);
    }
    mount_tracefs(TRACEFS_MOUNT_POINT)?;
    Ok(PathBuf::from(TRACEFS_MOUNT_POINT))
}

fn mount_tracefs(target: &str) -> Result<(), TracefsError> {
    let source = c"tracefs";
    let fstype = c"tracefs";
    let target = std::ffi::CString::new(target).map_err(|e| TracefsError::MountFailed {
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; data may be NULL.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(TracefsError::MountFailed {
            source: io::Error::last_os_error(),
        })
    }
}

/// The tracefs mount point listed in `/proc/mounts` text, preferring `/sys/kernel/tracing`.
pub fn find_tracefs_mount(proc_mounts: &str) -> Option<PathBuf> {
    let points: Vec<String> = proc_mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?;
            let fstype = fields.next()?;
            (fstype == "tracefs").then(|| unescape_mount_field(target))
        })
        .collect();
    let preferred = [TRACEFS_MOUNT_POINT, LEGACY_MOUNT_POINT];
    preferred
        .iter()
        .find(|p| points.iter().any(|q| q == *p))
        .map(PathBuf::from)
        .or_else(|| points.first().map(PathBuf::from))
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = bytes.get(i + 1..i + 4).unwrap_or_default();
        if bytes[i] == b'\\' && oct.len() == 3 && oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = oct
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One field of a tracepoint record, as described by its `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatField {
    pub name: String,
    /// C declaration without the name, e.g. `pid_t`, `char[16]`, `__data_loc char[]`.
    pub c_type: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// Parses the `field:` lines of a tracepoint `format` file; lines that are not fields are skipped.
pub fn parse_format(text: &str) -> Vec<FormatField> {
    text.lines().filter_map(parse_field_line).collect()
}

/// Parses `\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;`.
fn parse_field_line(line: &str) -> Option<FormatField> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in line.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim());
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("signed:") {
            signed = v.trim() == "1";
        }
    }
    let decl = decl?;
    // The name is the last word; an array suffix (`comm[16]`) belongs to the type, a `*` too.
    let (type_part, last) = decl.rsplit_once(char::is_whitespace)?;
    let (name, array) = match last.find('[') {
        Some(i) => (&last[..i], &last[i..]),
        None => (last, ""),
    };
    let (stars, name) = name.split_at(name.len() - name.trim_start_matches('*').len());
    if name.is_empty() {
        return None;
    }
    Some(FormatField {
        name: name.to_string(),
        c_type: format!("{}{stars}{array}", type_part.trim()),
        offset: offset?,
        size: size?,
        signed,
    })
}

/// Offset of `field` in records of tracepoint `category:event`.
pub fn field_offset(
    tracefs: &Path,
    category: &str,
    event: &str,
    field: &str,
) -> Result<u32, TracefsError> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text = fs::read_to_string(&path).map_err(|source| TracefsError::Read {
        path: path.clone(),
        source,
    })?;
    parse_format(&text)
        .into_iter()
        .find(|f| f.name == field)
        .map(|f| f.offset)
        .ok_or_else(|| TracefsError::FieldNotFound {
            category: category.to_string(),
            event: event.to_string(),
            field: field.to_string(),
            path,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Copied from /sys/kernel/tracing/events/... on the project machine (kernel 6.18).
    const SCHED_PROCESS_EXIT: &str = "name: sched_process_exit
ID: 369
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;

print fmt: \"comm=%s pid=%d prio=%d group_dead=%s\", REC->comm, REC->pid, REC->prio, REC->group_dead ? \"true\" : \"false\"
";

    const SCHED_PROCESS_FORK: &str = "name: sched_process_fork
ID: 366
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;

print fmt: \"comm=%s pid=%d child_comm=%s child_pid=%d\", __get_str(parent_comm), REC->parent_pid, __get_str(child_comm), REC->child_pid
";

    const SCHED_WAKING: &str = "name: sched_waking
ID: 375
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:int target_cpu;\toffset:32;\tsize:4;\tsigned:1;

print fmt: \"comm=%s pid=%d prio=%d target_cpu=%03d\", REC->comm, REC->pid, REC->prio, REC->target_cpu
";

    const SIGNAL_DELIVER: &str = "name: signal_deliver
ID: 260
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int sig;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int errno;\toffset:12;\tsize:4;\tsigned:1;
\tfield:int code;\toffset:16;\tsize:4;\tsigned:1;
\tfield:unsigned long sa_handler;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long sa_flags;\toffset:32;\tsize:8;\tsigned:0;

print fmt: \"sig=%d errno=%d code=%d sa_handler=%lx sa_flags=%lx\", REC->sig, REC->errno, REC->code, REC->sa_handler, REC->sa_flags
";

    fn field(text: &str, name: &str) -> FormatField {
        parse_format(text)
            .into_iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no field {name}"))
    }

    #[test]
    fn sched_process_exit_fields() {
        let fields = parse_format(SCHED_PROCESS_EXIT);
        assert_eq!(
            fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            vec![
                "common_type",
                "common_flags",
                "common_preempt_count",
                "common_pid",
                "comm",
                "pid",
                "prio",
                "group_dead"
            ]
        );
        assert_eq!(
            field(SCHED_PROCESS_EXIT, "comm"),
            FormatField {
                name: "comm".into(),
                c_type: "char[16]".into(),
                offset: 8,
                size: 16,
                signed: false
            }
        );
        assert_eq!(
            field(SCHED_PROCESS_EXIT, "pid"),
            FormatField {
                name: "pid".into(),
                c_type: "pid_t".into(),
                offset: 24,
                size: 4,
                signed: true
            }
        );
        assert_eq!(field(SCHED_PROCESS_EXIT, "group_dead").offset, 32);
        assert_eq!(field(SCHED_PROCESS_EXIT, "group_dead").c_type, "bool");
    }

    #[test]
    fn sched_process_fork_data_loc_fields() {
        let f = field(SCHED_PROCESS_FORK, "parent_comm");
        assert_eq!(f.c_type, "__data_loc char[]");
        assert_eq!((f.offset, f.size), (8, 4));
        assert_eq!(field(SCHED_PROCESS_FORK, "parent_pid").offset, 12);
        assert_eq!(field(SCHED_PROCESS_FORK, "child_comm").offset, 16);
        assert_eq!(field(SCHED_PROCESS_FORK, "child_pid").offset, 20);
    }

    #[test]
    fn sched_waking_and_signal_deliver_fields() {
        assert_eq!(field(SCHED_WAKING, "pid").offset, 24);
        assert_eq!(field(SCHED_WAKING, "target_cpu").offset, 32);
        let h = field(SIGNAL_DELIVER, "sa_handler");
        assert_eq!(
            (h.c_type.as_str(), h.offset, h.size, h.signed),
            ("unsigned long", 24, 8, false)
        );
        assert_eq!(field(SIGNAL_DELIVER, "sig").offset, 8);
        assert_eq!(field(SIGNAL_DELIVER, "code").offset, 16);
    }

    #[test]
    fn pointer_fields_and_garbage() {
        let f =
            parse_field_line("\tfield:const char * name;\toffset:8;\tsize:8;\tsigned:0;").unwrap();
        assert_eq!(
            (f.name.as_str(), f.c_type.as_str()),
            ("name", "const char *")
        );
        let f =
            parse_field_line("\tfield:const char *name;\toffset:8;\tsize:8;\tsigned:0;").unwrap();
        assert_eq!(
            (f.name.as_str(), f.c_type.as_str()),
            ("name", "const char*")
        );
        assert_eq!(parse_field_line("print fmt: \"x\""), None);
        assert_eq!(
            parse_field_line("\tfield:int x;\toffset:zz;\tsize:4;"),
            None
        );
        assert_eq!(parse_field_line("\tfield:;\toffset:0;\tsize:4;"), None);
        assert_eq!(parse_field_line(""), None);
    }

    #[test]
    fn field_offset_reads_the_events_tree() {
        let dir = tempfile::tempdir().unwrap();
        let ev = dir.path().join("events/sched/sched_process_exit");
        std::fs::create_dir_all(&ev).unwrap();
        std::fs::write(ev.join("format"), SCHED_PROCESS_EXIT).unwrap();
        assert_eq!(
            field_offset(dir.path(), "sched", "sched_process_exit", "group_dead").unwrap(),
            32
        );
        let e = field_offset(dir.path(), "sched", "sched_process_exit", "nope").unwrap_err();
        assert!(matches!(e, TracefsError::FieldNotFound { .. }));
        assert!(
            e.to_string()
                .contains("sched:sched_process_exit has no field \"nope\""),
            "{e}"
        );
        let e = field_offset(dir.path(), "sched", "missing", "pid").unwrap_err();
        assert!(matches!(e, TracefsError::Read { .. }));
    }

    #[test]
    fn finds_tracefs_in_proc_mounts() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                      debugfs /sys/kernel/debug debugfs rw 0 0\n\
                      tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n\
                      tracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n";
        assert_eq!(
            find_tracefs_mount(mounts),
            Some(PathBuf::from("/sys/kernel/tracing"))
        );
        assert_eq!(
            find_tracefs_mount("tracefs /mnt/my\\040trace tracefs rw 0 0\n"),
            Some(PathBuf::from("/mnt/my trace"))
        );
        assert_eq!(find_tracefs_mount("sysfs /sys sysfs rw 0 0\nbad\n"), None);
    }

    #[test]
    fn mount_failure_message_says_what_to_run_and_why() {
        let e = TracefsError::MountFailed {
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("mount -t tracefs tracefs /sys/kernel/tracing"),
            "{msg}"
        );
        assert!(msg.contains("attach tracepoints"), "{msg}");
        assert!(msg.contains("not permitted"), "{msg}");
    }
}
