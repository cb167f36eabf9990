//! Separate debug files, where distributions put them: `/usr/lib/debug/.build-id/xx/rest.debug`,
//! named by the binary's GNU build id (Debian's `-dbgsym` and Fedora's `-debuginfo` packages).
//!
//! blazesym looks there only for binaries that carry a `.gnu_debuglink`; a binary stripped
//! with `strip --strip-all` has none, so observer looks the build id up itself. The same rules
//! as for debug links hold: only root-controlled files under `/usr/lib/debug` are read (a local
//! user must not be able to plant a debug file observer reads), opened without blocking and
//! checked to be a regular file ([`crate::proc::binfile`]), their build id must be the
//! binary's, and their compressed sections must fit the inflation budget
//! ([`crate::proc::inflate`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ReadCache};

use crate::proc::inflate::Reservation;

/// Where separate debug files are looked up: root-owned system directories only.
pub const DEBUG_DIR: &str = "/usr/lib/debug";

/// Build ids shorter than this are not looked up (as blazesym: anything that short is bogus).
const MIN_BUILD_ID_LEN: usize = 8;

/// A separate debug file found for a binary, open, with its share of the inflation budget.
#[derive(Debug)]
pub struct DebugFile {
    file: File,
    path: PathBuf,
    reopen_path: PathBuf,
    _reservation: Reservation,
}

impl DebugFile {
    /// Where it was found.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `/proc/self/fd/N` of the handle held: what a symbolizer should open.
    pub fn reopen_path(&self) -> &Path {
        &self.reopen_path
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// `DIR/.build-id/xx/rest.debug` for `build_id` (`xx` its first byte in hex), as distributions
/// lay them out; `None` for build ids too short to mean anything.
pub fn build_id_path(dir: &Path, build_id: &[u8]) -> Option<PathBuf> {
    if build_id.len() < MIN_BUILD_ID_LEN {
        return None;
    }
    let (first, rest) = build_id.split_first()?;
    Some(
        dir.join(".build-id")
            .join(format!("{first:02x}"))
            .join(format!("{}.debug", crate::proc::normaddr::hex(rest))),
    )
}

/// The debug file for `build_id` under [`DEBUG_DIR`], if there is one observer may use: `Ok(None)`
/// when there is none, `Err` (why, for the log) when one exists but is refused.
pub fn find_by_build_id(build_id: &[u8]) -> Result<Option<DebugFile>, String> {
    find_in(Path::new(DEBUG_DIR), build_id)
}

/// [`find_by_build_id`] under `dir` (tests use other directories).
pub(crate) fn find_in(dir: &Path, build_id: &[u8]) -> Result<Option<DebugFile>, String> {
    let Some(path) = build_id_path(dir, build_id) else {
        return Ok(None);
    };
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let file = crate::proc::binfile::open_regular(&path, None).map_err(|e| e.to_string())?;
    if !crate::proc::binfile::root_controlled(&file, &path) {
        return Err(format!(
            "{} can be changed by non-root users: not read",
            path.display()
        ));
    }
    let declared = check(&file, build_id).map_err(|e| format!("{}: {e}", path.display()))?;
    let reservation = Reservation::take(declared).map_err(|e| e.to_string())?;
    Ok(Some(DebugFile {
        reopen_path: crate::proc::binfile::fd_path(&file),
        file,
        path,
        _reservation: reservation,
    }))
}

/// Whether `file` is the debug file of `build_id` with usable debug information; what its
/// compressed sections declare in total.
fn check(file: &File, build_id: &[u8]) -> Result<u64, String> {
    // The handle was opened just now and nothing else uses it yet: seeking it is safe.
    let cache = ReadCache::new(file);
    let obj = object::File::parse(&cache).map_err(|e| format!("not a readable ELF file: {e}"))?;
    match obj.build_id() {
        Ok(Some(id)) if id == build_id => {}
        _ => return Err("its build id is not the binary's".into()),
    }
    let has_dwarf = obj
        .section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0);
    let has_symbols = obj.symbols().next().is_some();
    if !has_dwarf && !has_symbols {
        return Err("it has neither DWARF nor symbols".into());
    }
    crate::proc::inflate::verify_sections(&obj, |offset, len| {
        let mut reader = file;
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(offset))?;
        Ok(std::io::Read::take(reader, len))
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_paths_as_distributions_lay_them_out() {
        let id = [0xab, 0xcd, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05];
        assert_eq!(
            build_id_path(Path::new("/usr/lib/debug"), &id),
            Some(PathBuf::from(
                "/usr/lib/debug/.build-id/ab/cdef0102030405.debug"
            ))
        );
        assert_eq!(build_id_path(Path::new("/x"), &id[..4]), None);
    }

    #[test]
    fn nothing_there_is_no_debug_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(find_in(dir.path(), &[7; 20]), Ok(None)));
    }

    /// A debug file in a directory a user can write to is refused, even with the right build
    /// id: it could have been planted (the system copy of the test binary's own debug info
    /// stands in for one).
    #[test]
    fn debug_files_others_can_change_are_refused() {
        let exe = std::env::current_exe().expect("own binary");
        let bytes = std::fs::read(&exe).expect("read own binary");
        let obj = object::File::parse(&*bytes).expect("ELF");
        let Ok(Some(id)) = obj.build_id() else {
            return; // built without a build id
        };
        let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
        let path = build_id_path(dir.path(), id).expect("long enough");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&exe, &path).expect("copy");
        let err = find_in(dir.path(), id).expect_err("planted in /tmp");
        assert!(err.contains("non-root"), "{err}");
        // A FIFO put in its place is refused without blocking.
        std::fs::remove_file(&path).expect("rm");
        let c = std::ffi::CString::new(path.to_str().expect("utf8")).expect("cstr");
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = find_in(dir.path(), id).expect_err("a FIFO");
        assert!(err.contains("not a regular file"), "{err}");
    }
}
