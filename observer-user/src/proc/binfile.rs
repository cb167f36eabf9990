//! Opening files that other users control (target binaries) without letting them block or
//! steer us.
//!
//! A local user can rename a FIFO over their program's file at any moment: a plain `open()`
//! of it would block observer forever, and a path read twice may name two different files.
//! Files are therefore opened once, with `O_NONBLOCK` (a FIFO opens without waiting for a
//! writer), checked to be a regular file (and, when the caller knows it, the very inode it
//! expects), and from then on read only through that descriptor or `/proc/self/fd/N`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a regular file (a FIFO, device or directory was put in its place)")]
    NotRegular { path: PathBuf },
    #[error("{path} is inode {found}, not the mapped inode {expected} (replaced on disk)")]
    Replaced {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
}

/// Opens `path` read-only without blocking and checks that it is a regular file and, with
/// `expected_inode`, that inode. The device is not compared: overlayfs reports the underlying
/// layer's device in `/proc/PID/maps` but its own in `fstat`, while the inode number is kept.
pub fn open_regular(path: &Path, expected_inode: Option<u64>) -> Result<File, OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    if let Some(expected) = expected_inode.filter(|&i| i != 0 && i != meta.ino()) {
        return Err(OpenError::Replaced {
            path: path.to_path_buf(),
            found: meta.ino(),
            expected,
        });
    }
    Ok(file)
}

/// The path through which other code (blazesym, the kernel's uprobe attach) reaches exactly
/// the file behind `fd`, whatever happens to its name on disk.
pub fn fd_path(file: &File) -> PathBuf {
    use std::os::unix::io::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Whether nobody but root can change `file` or the names on its path `path`: root owns the
/// file and every directory from `path` up to `/`, and none of them is writable by group or
/// others. Only for such files may tools look for companion files (`.gnu_debuglink`
/// targets, `.dwp` packages) by path, since nobody else can plant or swap those.
pub fn root_controlled(file: &File, path: &Path) -> bool {
    let locked = |m: &std::fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    if !file.metadata().is_ok_and(|m| locked(&m)) || !path.is_absolute() {
        return false;
    }
    path.ancestors()
        .skip(1)
        .all(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && locked(&m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_opens_without_blocking_and_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("prog");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstr");
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // With a plain open() this call would never return: nobody writes the FIFO.
        let err = open_regular(&fifo, None).expect_err("a FIFO is refused");
        assert!(matches!(err, OpenError::NotRegular { .. }), "{err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn replaced_inode_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prog");
        std::fs::write(&path, b"x").expect("write");
        let ino = std::fs::metadata(&path).expect("meta").ino();
        assert!(open_regular(&path, Some(ino)).is_ok());
        assert!(open_regular(&path, None).is_ok());
        let err = open_regular(&path, Some(ino + 1)).expect_err("other inode");
        assert!(matches!(err, OpenError::Replaced { .. }), "{err}");
        assert!(open_regular(dir.path(), None).is_err(), "a directory");
    }

    #[test]
    fn only_root_owned_locked_paths_are_root_controlled() {
        let libc_path = Path::new("/usr/bin/env");
        if let Ok(f) = open_regular(libc_path, None) {
            assert!(root_controlled(&f, libc_path));
        }
        // A temporary directory is world-writable (sticky or not): others can plant files.
        let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
        let path = dir.path().join("prog");
        std::fs::write(&path, b"x").expect("write");
        let f = open_regular(&path, None).expect("open");
        assert!(!root_controlled(&f, &path));
    }
}
