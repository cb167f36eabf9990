//! Byte offsets of the `runtime.g` / `runtime.m` fields observer reads.
//!
//! DWARF is the source of truth; the table below is the fallback for stripped binaries. Every
//! row was measured from the DWARF of a binary built by that toolchain (go1.19.8, 1.21.13,
//! 1.22.10, 1.23.9, 1.24.11, 1.25.5, 1.26.6, 1.27.3). Versions without a row (1.17, 1.18, 1.20,
//! future ones) borrow the nearest measured row and are reported as such.

use serde::Serialize;

use super::buildinfo::GoVersion;
use super::dwarf::{struct_members, Members};
use super::elf::DebugSections;

/// Upper bound on the part of `runtime.g` / `runtime.m` read.
const MAX_G_SIZE: usize = 4096;

/// The structs whose members give the layout.
const STRUCTS: [&str; 4] = ["runtime.g", "runtime.gobuf", "runtime.m", "runtime.stack"];

/// The layout from DWARF, or `None` when the sections are absent or lack a needed member.
pub(crate) fn offsets_from_dwarf(sections: &DebugSections) -> Option<GOffsets> {
    let members = struct_members(sections, &STRUCTS)?;
    GOffsets::from_members(&members)
}

/// Field offsets, in bytes from the start of the struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GOffsets {
    /// `g.stack.lo` / `g.stack.hi`: bounds of the goroutine stack.
    pub g_stack_lo: u64,
    pub g_stack_hi: u64,
    /// `g.m`: the M running it (48 in every version).
    pub g_m: u64,
    /// `g.sched`, a `gobuf`; `gobuf_*` are offsets inside it.
    pub g_sched: u64,
    pub gobuf_sp: u64,
    pub gobuf_pc: u64,
    pub gobuf_bp: u64,
    pub g_syscallsp: u64,
    pub g_syscallpc: u64,
    /// Go 1.23+.
    pub g_syscallbp: Option<u64>,
    pub g_atomicstatus: u64,
    pub g_goid: u64,
    pub g_waitsince: u64,
    pub g_waitreason: u64,
    /// Go 1.21+.
    pub g_parent_goid: Option<u64>,
    pub g_gopc: u64,
    pub g_startpc: u64,
    /// `g.lockedm` (non-zero: "locked to thread").
    pub g_lockedm: Option<u64>,
    /// `m.curg`: the user goroutine of an M (for probes that run on g0).
    pub m_curg: u64,
    /// `m.procid`: the thread id of an M.
    pub m_procid: Option<u64>,
    /// `g.labels`: its pprof labels. Not in [`GOffsets::g_read_len`]: labels are read only for
    /// the goroutines an alert is about, never for every `g` of a snapshot.
    #[serde(default)]
    pub g_labels: Option<u64>,
}

impl GOffsets {
    /// Bytes of a `g` to read to cover every field listed here.
    pub fn g_read_len(&self) -> usize {
        let fields = [
            self.g_stack_hi,
            self.g_m,
            self.g_sched + self.gobuf_sp,
            self.g_sched + self.gobuf_pc,
            self.g_sched + self.gobuf_bp,
            self.g_syscallsp,
            self.g_syscallpc,
            self.g_syscallbp.unwrap_or(0),
            self.g_atomicstatus,
            self.g_goid,
            self.g_waitsince,
            self.g_waitreason,
            self.g_parent_goid.unwrap_or(0),
            self.g_gopc,
            self.g_startpc,
            self.g_lockedm.unwrap_or(0),
        ];
        fields.into_iter().max().unwrap_or(0) as usize + 8
    }

    pub(crate) fn from_members(members: &Members) -> Option<GOffsets> {
        let g = members.get("runtime.g")?;
        let gobuf = members.get("runtime.gobuf")?;
        let m = members.get("runtime.m")?;
        let stack = members.get("runtime.stack");
        let stack_field =
            |name: &str, default: u64| stack.and_then(|s| s.get(name).copied()).unwrap_or(default);
        let stack_base = g.get("stack").copied().unwrap_or(0);
        let offsets = GOffsets {
            g_stack_lo: stack_base + stack_field("lo", 0),
            g_stack_hi: stack_base + stack_field("hi", 8),
            g_m: *g.get("m")?,
            g_sched: *g.get("sched")?,
            gobuf_sp: *gobuf.get("sp")?,
            gobuf_pc: *gobuf.get("pc")?,
            gobuf_bp: *gobuf.get("bp")?,
            g_syscallsp: *g.get("syscallsp")?,
            g_syscallpc: *g.get("syscallpc")?,
            g_syscallbp: g.get("syscallbp").copied(),
            g_atomicstatus: *g.get("atomicstatus")?,
            g_goid: *g.get("goid")?,
            g_waitsince: *g.get("waitsince")?,
            g_waitreason: *g.get("waitreason")?,
            g_parent_goid: g.get("parentGoid").copied(),
            g_gopc: *g.get("gopc")?,
            g_startpc: *g.get("startpc")?,
            g_lockedm: g.get("lockedm").copied(),
            m_curg: *m.get("curg")?,
            m_procid: m.get("procid").copied(),
            g_labels: g.get("labels").copied(),
        };
        // A g is well under 1 KiB in every version: anything else is corrupt DWARF, and
        // would make the dump read absurd amounts per goroutine.
        (offsets.g_read_len() <= MAX_G_SIZE && offsets.m_curg < MAX_G_SIZE as u64)
            .then_some(offsets)
    }
}

/// Which row of the table a version got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableMatch {
    Exact,
    /// Borrowed from the named measured minor version.
    Nearest(u32),
}

/// One measured layout; `minor` is the Go 1.x minor version it was measured on.
struct Row {
    minor: u32,
    sched_bp: u64,
    syscallsp: u64,
    syscallbp: Option<u64>,
    goid: u64,
    lockedm: u64,
    parent_goid: Option<u64>,
    gopc: u64,
    startpc: u64,
    m_curg: u64,
    m_procid: u64,
}

// goid is followed by schedlink, waitsince, waitreason (8 bytes each), and preceded by
// atomicstatus + stackLock; syscallpc follows syscallsp. These hold in every row.
const ROWS: &[Row] = &[
    row(19, 48, 112, None, 152, 232, None, 296, 312, 192, 72),
    row(21, 48, 112, None, 152, 208, Some(272), 280, 296, 192, 72),
    row(22, 48, 112, None, 152, 208, Some(272), 280, 296, 192, 72),
    row(
        23,
        48,
        112,
        Some(128),
        160,
        216,
        Some(280),
        288,
        304,
        192,
        72,
    ),
    row(
        24,
        48,
        112,
        Some(128),
        160,
        216,
        Some(280),
        288,
        304,
        192,
        72,
    ),
    row(
        25,
        40,
        104,
        Some(120),
        152,
        208,
        Some(272),
        280,
        296,
        184,
        64,
    ),
    row(
        26,
        40,
        104,
        Some(120),
        152,
        208,
        Some(280),
        288,
        304,
        184,
        64,
    ),
    row(
        27,
        40,
        104,
        Some(120),
        152,
        208,
        Some(280),
        288,
        304,
        184,
        64,
    ),
];

/// `g.labels` by minor version, measured (DWARF of go1.19.8 and go1.27.3 binaries). Only exact
/// matches are used: a borrowed offset could read another field as a pointer, and labels must
/// never be wrong, so unmeasured stripped binaries get none.
const G_LABELS: &[(u32, u64)] = &[(19, 360), (27, 352)];

#[allow(clippy::too_many_arguments)]
const fn row(
    minor: u32,
    sched_bp: u64,
    syscallsp: u64,
    syscallbp: Option<u64>,
    goid: u64,
    lockedm: u64,
    parent_goid: Option<u64>,
    gopc: u64,
    startpc: u64,
    m_curg: u64,
    m_procid: u64,
) -> Row {
    Row {
        minor,
        sched_bp,
        syscallsp,
        syscallbp,
        goid,
        lockedm,
        parent_goid,
        gopc,
        startpc,
        m_curg,
        m_procid,
    }
}

/// The measured row for `version`, else the nearest one (the highest below it, or the lowest).
pub(crate) fn table_offsets(version: &GoVersion) -> Option<(GOffsets, TableMatch)> {
    if version.major != 1 {
        return None;
    }
    let row = ROWS
        .iter()
        .rev()
        .find(|r| r.minor <= version.minor)
        .or_else(|| ROWS.first())?;
    let matched = if row.minor == version.minor {
        TableMatch::Exact
    } else {
        TableMatch::Nearest(row.minor)
    };
    // Before 1.21 there was no parentGoid, so 1.20 must not borrow 1.21's.
    let parent_goid = if version.at_least(1, 21) {
        row.parent_goid
    } else {
        None
    };
    Some((
        GOffsets {
            g_stack_lo: 0,
            g_stack_hi: 8,
            g_m: 48,
            g_sched: 56,
            gobuf_sp: 0,
            gobuf_pc: 8,
            gobuf_bp: row.sched_bp,
            g_syscallsp: row.syscallsp,
            g_syscallpc: row.syscallsp + 8,
            g_syscallbp: row.syscallbp,
            g_atomicstatus: row.goid - 8,
            g_goid: row.goid,
            g_waitsince: row.goid + 16,
            g_waitreason: row.goid + 24,
            g_parent_goid: parent_goid,
            g_gopc: row.gopc,
            g_startpc: row.startpc,
            g_lockedm: Some(row.lockedm),
            m_curg: row.m_curg,
            m_procid: Some(row.m_procid),
            g_labels: G_LABELS
                .iter()
                .find(|(minor, _)| *minor == version.minor)
                .map(|&(_, off)| off),
        },
        matched,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u32) -> GoVersion {
        GoVersion {
            major: 1,
            minor,
            patch: 0,
            raw: format!("go1.{minor}"),
        }
    }

    #[test]
    fn goid_offsets_match_the_notes() {
        for (minor, goid) in [
            (19, 152),
            (22, 152),
            (23, 160),
            (24, 160),
            (25, 152),
            (27, 152),
        ] {
            let (off, m) = table_offsets(&v(minor)).unwrap();
            assert_eq!(off.g_goid, goid, "go1.{minor}");
            assert_eq!(m, TableMatch::Exact);
            assert_eq!(off.g_waitreason, goid + 24);
        }
    }

    #[test]
    fn unmeasured_versions_borrow_the_nearest() {
        let (off, m) = table_offsets(&v(20)).unwrap();
        assert_eq!(m, TableMatch::Nearest(19));
        assert_eq!(off.g_parent_goid, None);
        assert_eq!(table_offsets(&v(17)).unwrap().1, TableMatch::Nearest(19));
        assert_eq!(table_offsets(&v(30)).unwrap().1, TableMatch::Nearest(27));
        assert!(table_offsets(&GoVersion {
            major: 2,
            minor: 0,
            patch: 0,
            raw: "go2.0".into()
        })
        .is_none());
    }

    #[test]
    fn labels_offset_only_for_measured_versions() {
        assert_eq!(table_offsets(&v(19)).unwrap().0.g_labels, Some(360));
        assert_eq!(table_offsets(&v(27)).unwrap().0.g_labels, Some(352));
        assert_eq!(table_offsets(&v(20)).unwrap().0.g_labels, None);
        assert_eq!(table_offsets(&v(28)).unwrap().0.g_labels, None);
    }

    #[test]
    fn read_len_covers_the_last_field() {
        let (off, _) = table_offsets(&v(27)).unwrap();
        assert_eq!(off.g_read_len(), 304 + 8);
    }
}
