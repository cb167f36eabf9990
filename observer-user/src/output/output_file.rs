//! Opening the files observer writes (alerts, rotated alerts, folded, pprof, SVG, recordings,
//! reports), in one place, so that nothing a local user plants at or above an output path can
//! block observer, redirect its writes or read what it writes.
//!
//! observer runs as root and is often told to write into shared directories (`/tmp`, a
//! world-writable log dir). So an output is opened like this:
//! - The parent directories are walked one component at a time with `openat`, each opened
//!   `O_DIRECTORY|O_NOFOLLOW`. A symbolic link among them is followed only when it belongs to
//!   root or to us: whoever owns such a link could write the output themselves, so it redirects
//!   nothing an attacker controls (and system links like `/var/run -> /run` keep working); its
//!   target is walked by the same rules. A link owned by anyone else is refused.
//! - The file itself is created anew with `O_EXCL`, or, if it exists, opened with `O_NOFOLLOW`
//!   (a symlink is refused) and `O_NONBLOCK` (a FIFO can never block the open) and then checked
//!   with `fstat` on the open fd: it must be a regular file, ours (same uid), with one link (a
//!   hard link planted to a file of ours would make us overwrite that file). Only then is it
//!   truncated.
//!
//! `-` (stdout) is the caller's business, never a path here.

use std::{
    ffi::{CString, OsStr, OsString},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

/// How an existing file is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Emptied (profiles, recordings, reports).
    Truncate,
    /// Appended to, and readable (a restarted sidecar keeps its previous alerts).
    Append,
    /// Only checked, left as it is: the up-front check of an output written at the end.
    Check,
}

/// Permissions of a file observer creates (before the umask).
const CREATE_MODE: libc::c_uint = 0o640;

/// How many symbolic links one path may go through (Linux's own limit).
const MAX_LINKS: u32 = 40;

/// Opens `path` for writing as described in the module documentation. Errors name the path
/// and say what to do.
pub fn open(path: &Path, mode: Mode) -> io::Result<File> {
    let (dir, name) = OutputDir::parent_of(path)?;
    dir.open(&name, mode)
        .map_err(|e| with_path(path, e, "choose another path"))
}

/// Creates (truncates) an output file, safely: [`open`] with [`Mode::Truncate`].
pub fn create(path: &Path) -> io::Result<File> {
    open(path, Mode::Truncate)
}

/// A directory that outputs are created in, held open so that later creations and renames
/// (alert rotation) happen in the very directory that was checked, whatever is renamed over
/// its path afterwards.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
    /// For messages.
    path: PathBuf,
}

impl OutputDir {
    /// The directory `path` is in, walked safely, and the file name.
    pub fn parent_of(path: &Path) -> io::Result<(OutputDir, OsString)> {
        let name = match path.components().next_back() {
            Some(Component::Normal(name)) if !path.as_os_str().as_bytes().ends_with(b"/") => {
                name.to_os_string()
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: not a file name; give the path of a file",
                        path.display()
                    ),
                ))
            }
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        let start = if parent.is_absolute() { "/" } else { "." };
        let mut links = 0;
        let fd = open_dir_at(None, start)
            .and_then(|root| walk(root, parent, &mut links))
            .map_err(|e| {
                with_path(
                    path,
                    e,
                    "choose a directory that is not a link of another user",
                )
            })?;
        let dir_path = if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent.to_path_buf()
        };
        Ok((OutputDir { fd, path: dir_path }, name))
    }

    /// Opens `name` in this directory (see the module documentation).
    pub fn open(&self, name: &OsStr, mode: Mode) -> io::Result<File> {
        let access = match mode {
            Mode::Truncate | Mode::Check => libc::O_WRONLY,
            Mode::Append => libc::O_RDWR | libc::O_APPEND,
        };
        let flags = access | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        let cname = c_name(name)?;
        // Created anew, or an existing file checked; a file removed in between is retried.
        for _ in 0..8 {
            // SAFETY: a valid dir fd and NUL-terminated name.
            let fd = unsafe {
                libc::openat(
                    self.fd.as_raw_fd(),
                    cname.as_ptr(),
                    flags | libc::O_CREAT | libc::O_EXCL,
                    // Alerts and profiles name other users' functions, threads and paths:
                    // readable by observer's user and group (a log shipper), not by everyone.
                    CREATE_MODE,
                )
            };
            if fd >= 0 {
                // SAFETY: a fresh fd we own.
                return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(err);
            }
            // SAFETY: as above.
            let fd = unsafe { libc::openat(self.fd.as_raw_fd(), cname.as_ptr(), flags) };
            if fd < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::ENOENT) => continue,
                    Some(libc::ELOOP) => {
                        return Err(refusal("is a symbolic link; refusing to write through it"))
                    }
                    // O_NONBLOCK|O_WRONLY on a FIFO without a reader, or a socket.
                    Some(libc::ENXIO) => {
                        return Err(refusal("is a FIFO or socket, not a regular file"))
                    }
                    _ => return Err(err),
                }
            }
            // SAFETY: a fresh fd we own.
            let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            check_reusable(&file)?;
            if mode == Mode::Truncate {
                file.set_len(0)?;
            }
            return Ok(file);
        }
        Err(io::Error::other(
            "the file keeps disappearing while being opened",
        ))
    }

    /// Renames `from` to `to` inside this directory (a symlink is moved, never followed).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let dir = self.fd.as_raw_fd();
        // SAFETY: valid dir fd and names.
        cvt(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) })
    }

    /// Removes the file `name` of this directory.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: valid dir fd and name.
        cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An existing file may be reused only if it is a regular file of ours with no other name.
fn check_reusable(file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "is a directory"
        } else if ft.is_fifo() {
            "is a FIFO"
        } else if ft.is_socket() {
            "is a socket"
        } else {
            "is a device"
        };
        return Err(refusal(&format!("{what}, not a regular file")));
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(refusal(&format!(
            "belongs to uid {}, not to us (uid {euid}); refusing to reuse a file another user may have planted (remove it)",
            meta.uid()
        )));
    }
    if meta.nlink() > 1 {
        return Err(refusal(&format!(
            "has {} hard links; refusing to write to a file that has other names (remove it)",
            meta.nlink()
        )));
    }
    Ok(())
}

use std::os::unix::fs::FileTypeExt as _;

/// Walks the directories of `rel` from `dir`, following only links of root or ours.
fn walk(mut dir: OwnedFd, rel: &Path, links: &mut u32) -> io::Result<OwnedFd> {
    for comp in rel.components() {
        match comp {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => dir = open_dir_at(Some(&dir), "..")?,
            Component::Normal(name) => {
                let cname = c_name(name)?;
                // SAFETY: zeroed stat is a valid out-buffer.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: valid dir fd, name and buffer.
                cvt(unsafe {
                    libc::fstatat(
                        dir.as_raw_fd(),
                        cname.as_ptr(),
                        &mut st,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                })
                .map_err(|e| component_error(name, e))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                    dir = open_dir_at(Some(&dir), name).map_err(|e| component_error(name, e))?;
                    continue;
                }
                // SAFETY: geteuid cannot fail.
                let euid = unsafe { libc::geteuid() };
                if st.st_uid != 0 && st.st_uid != euid {
                    return Err(refusal(&format!(
                        "directory {:?} on the way is a symbolic link owned by uid {}; refusing to follow it",
                        name, st.st_uid
                    )));
                }
                *links += 1;
                if *links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = read_link_at(&dir, &cname)?;
                let start = if target.is_absolute() {
                    open_dir_at(None, "/")?
                } else {
                    open_dir_at(Some(&dir), ".")?
                };
                dir = walk(start, &target, links)?;
            }
        }
    }
    Ok(dir)
}

fn component_error(name: &OsStr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("directory {name:?} on the way: {e}"))
}

fn open_dir_at(dir: Option<&OwnedFd>, name: impl AsRef<OsStr>) -> io::Result<OwnedFd> {
    let cname = c_name(name.as_ref())?;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: valid dir fd (or AT_FDCWD) and name.
    let fd = unsafe {
        libc::openat(
            at,
            cname.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_link_at(dir: &OwnedFd, name: &CString) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid dir fd, name and buffer of the given length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(
        <OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
    ))
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn refusal(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what.to_string())
}

/// "PATH: problem; advice" (the advice only for refusals, which the user can act on).
fn with_path(path: &Path, e: io::Error, advice: &str) -> io::Error {
    let text = if e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none() {
        format!("{}: {e}; {advice}", path.display())
    } else {
        format!("{}: {e}", path.display())
    };
    io::Error::new(e.kind(), text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, io::Write, os::unix::fs::symlink};

    #[test]
    fn creates_truncates_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        open(&p, Mode::Truncate)
            .unwrap()
            .write_all(b"one\n")
            .unwrap();
        open(&p, Mode::Append).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\n");
        open(&p, Mode::Check).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\n");
        open(&p, Mode::Truncate).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn new_files_are_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("alerts.jsonl");
        open(&p, Mode::Append).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o007, 0);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        let e = open(&p, Mode::Truncate).unwrap_err().to_string();
        assert!(
            e.contains("FIFO") && e.contains(&p.display().to_string()),
            "{e}"
        );
        // With a reader attached the open succeeds at the syscall, and fstat refuses it.
        let reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .unwrap();
        let e = open(&p, Mode::Append).unwrap_err().to_string();
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        drop(reader);
    }

    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn symlinks_and_hard_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("link");
        symlink(&victim, &link).unwrap();
        let e = open(&link, Mode::Truncate).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let hard = dir.path().join("hard");
        fs::hard_link(&victim, &hard).unwrap();
        let e = open(&hard, Mode::Truncate).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn directories_and_missing_parents_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), Mode::Truncate).unwrap_err().to_string();
        assert!(e.contains("s a directory"), "{e}");
        let missing = dir.path().join("nope").join("out");
        let e = open(&missing, Mode::Truncate).unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("No such file"), "{e}");
        let e = open(Path::new("x/"), Mode::Truncate)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a file name"), "{e}");
    }

    #[test]
    fn our_own_parent_links_are_followed() {
        // Links we own (the test runs as their owner) lead where they point.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        symlink(&real, dir.path().join("via")).unwrap();
        symlink("real", dir.path().join("rel")).unwrap();
        open(&dir.path().join("via/a"), Mode::Truncate).unwrap();
        open(&dir.path().join("rel/b"), Mode::Truncate).unwrap();
        assert!(real.join("a").is_file() && real.join("b").is_file());
        symlink("loop", dir.path().join("loop")).unwrap();
        assert!(open(&dir.path().join("loop/x"), Mode::Truncate).is_err());
    }

    #[test]
    fn files_and_parent_links_of_other_users_are_refused() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED (loudly): needs root to give files to another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let chown = |p: &Path| {
            let c = CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: valid path.
            assert_eq!(unsafe { libc::lchown(c.as_ptr(), 65534, 65534) }, 0);
        };
        let planted = dir.path().join("planted");
        fs::write(&planted, "theirs").unwrap();
        chown(&planted);
        let e = open(&planted, Mode::Append).unwrap_err().to_string();
        assert!(e.contains("belongs to uid 65534"), "{e}");
        assert_eq!(fs::read_to_string(&planted).unwrap(), "theirs");

        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let via = dir.path().join("via");
        symlink(&real, &via).unwrap();
        chown(&via);
        let e = open(&via.join("out"), Mode::Truncate)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link owned by uid 65534"), "{e}");
        assert!(!real.join("out").exists());
    }
}
