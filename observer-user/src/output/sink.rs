//! Where alerts go: JSON lines to a file or stdout, and one readable line each on stderr
//! (its text: [`crate::output::alert_text`]).
//!
//! A long-running sidecar rotates its alerts file by size, numbered like logrotate (`PATH.1` is
//! the newest rotated file, `PATH.N` the oldest) so that log shippers that follow rotated files
//! (fluent-bit, vector, filebeat) pick up every line exactly once.

use std::{
    ffi::OsString,
    fs::File,
    io::{self, BufWriter, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use crate::output::output_file::{self, Mode, OutputDir};

use crate::output::alert::Alert;
use crate::output::alert_text::one_line;

pub struct AlertSink {
    json: Option<Box<dyn Write + Send>>,
    /// The JSON destination, for messages: its path, or "stdout".
    json_name: String,
    to_stderr: bool,
    /// The JSON destination is failing (e.g. a full disk): said once, not at every alert.
    failing: bool,
    /// Alerts whose JSON line could not be written, and the first error.
    lost: u64,
    first_error: Option<io::Error>,
}

impl AlertSink {
    /// `path` `-` means stdout. Files are opened safely (see [`crate::output::output_file`]).
    pub fn open(path: Option<&Path>, quiet: bool) -> io::Result<Self> {
        let json: Option<Box<dyn Write + Send>> = match path {
            None => None,
            Some(p) if p == Path::new("-") => Some(Box::new(io::stdout())),
            Some(p) => Some(Box::new(BufWriter::new(output_file::create(p)?))),
        };
        Ok(Self::new(json, path, quiet))
    }

    /// Like [`AlertSink::open`], and the file is rotated before a line would take it past
    /// `max_bytes`, keeping `keep` rotated files. An existing file is appended to, not truncated:
    /// a restarted sidecar must not wipe the alerts of its previous run.
    pub fn open_rotating(path: &Path, max_bytes: u64, keep: u32, quiet: bool) -> io::Result<Self> {
        let file = RotatingFile::open(path, max_bytes, keep)?;
        Ok(Self::new(Some(Box::new(file)), Some(path), quiet))
    }

    fn new(json: Option<Box<dyn Write + Send>>, path: Option<&Path>, quiet: bool) -> Self {
        let json_name = match path {
            Some(p) if p == Path::new("-") => "stdout".to_string(),
            Some(p) => p.display().to_string(),
            None => String::new(),
        };
        Self {
            json,
            json_name,
            to_stderr: !quiet,
            failing: false,
            lost: 0,
            first_error: None,
        }
    }

    /// The stderr line first, then the JSON line: a JSON destination that fails (a full disk)
    /// must not take the other one down; its failure is said once, and again when it recovers.
    pub fn write(&mut self, alert: &Alert) {
        if self.to_stderr {
            crate::say!("{}", one_line(alert));
        }
        let Some(w) = self.json.as_mut() else { return };
        // One write per line: rotation happens between lines, never inside one.
        let mut line = alert.to_json_line();
        line.push('\n');
        match w.write_all(line.as_bytes()).and_then(|()| w.flush()) {
            Ok(()) if self.failing => {
                self.failing = false;
                crate::say!(
                    "observer: writing alerts to {} works again ({} alerts could not be written)",
                    self.json_name,
                    self.lost
                );
            }
            Ok(()) => {}
            Err(e) => {
                self.lost += 1;
                if !self.failing {
                    crate::say!(
                        "observer: error: cannot write alerts to {}: {e}; observing goes on{}",
                        self.json_name,
                        if self.to_stderr {
                            ", alerts still come here"
                        } else {
                            ""
                        }
                    );
                }
                self.failing = true;
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// Flushes, and says what could not be written, if anything: "cannot write alerts to
    /// PATH: ... (N alerts lost)".
    pub fn finish(&mut self) -> Option<String> {
        if let Some(w) = self.json.as_mut() {
            if let Err(e) = w.flush() {
                self.first_error.get_or_insert(e);
            }
        }
        self.first_error.as_ref().map(|e| {
            format!(
                "cannot write alerts to {}: {e} ({} alerts not written there)",
                self.json_name, self.lost
            )
        })
    }
}

/// A file that is rotated by size between writes: each `write` call is kept whole in one file,
/// so a caller that writes whole lines never sees a line split across two files.
pub struct RotatingFile {
    path: PathBuf,
    /// Rotation renames and creates in the directory checked at open, by name.
    dir: OutputDir,
    name: OsString,
    out: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep: u32,
    /// A rotation failed (e.g. the directory became read-only): lines keep going to the current
    /// file, the next attempt waits for another `max_bytes` (retrying on every line would shift
    /// the rotated files each time), and the failure is reported once until a rotation works.
    failing: bool,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        if max_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: the rotation size must be above 0", path.display()),
            ));
        }
        let (dir, name) = OutputDir::parent_of(path)?;
        let mut file = dir
            .open(&name, Mode::Append)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let size = file.seek(SeekFrom::End(0))?;
        // A previous run killed mid-line left a torn line: end it, so that ours parses.
        let mut last = [0u8; 1];
        if size > 0 && file.read_exact_at(&mut last, size - 1).is_ok() && last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
        let size = file.seek(SeekFrom::End(0))?;
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            name,
            out: BufWriter::new(file),
            size,
            max_bytes,
            keep,
            failing: false,
        })
    }

    fn numbered(&self, n: u32) -> OsString {
        let mut name = self.name.clone();
        name.push(format!(".{n}"));
        name
    }

    /// PATH.(N-1) -> PATH.N, ..., PATH -> PATH.1, then a new PATH. rename() replaces the target
    /// and moves a symlink itself, never what it points to.
    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if self.keep == 0 {
            self.dir.remove(&self.name).or_else(not_found_ok)?;
        } else {
            for n in (1..self.keep).rev() {
                self.dir
                    .rename(&self.numbered(n), &self.numbered(n + 1))
                    .or_else(not_found_ok)?;
            }
            // Missing when a previous attempt moved it but could not create the new file.
            self.dir
                .rename(&self.name, &self.numbered(1))
                .or_else(not_found_ok)?;
        }
        let file = self.dir.open(&self.name, Mode::Truncate)?;
        self.out = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

fn not_found_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            match self.rotate() {
                Ok(()) => self.failing = false,
                Err(e) => {
                    if !self.failing {
                        crate::say!(
                            "observer: cannot rotate {}: {e}; writing on past the size limit",
                            self.path.display()
                        );
                    }
                    self.failing = true;
                    self.size = 0;
                }
            }
        }
        // All of it or an error: a partial write would let write_all split a line at rotation.
        self.out.write_all(buf)?;
        self.size = self.size.saturating_add(len);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::symlink};

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    fn numbered(path: &Path, n: u32) -> PathBuf {
        PathBuf::from(format!("{}.{n}", path.display()))
    }

    /// 20-byte lines "line 000000000001\n"-style, numbered so their order can be checked.
    fn line(i: u32) -> String {
        format!("line {i:014}\n")
    }

    #[test]
    fn rotates_like_logrotate_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..23 {
            f.write_all(line(i).as_bytes()).unwrap();
        }
        f.flush().unwrap();
        // 5 lines of 20 bytes fill a file exactly; the 6th starts a new one.
        let lines = |p: &Path| read(p).lines().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            lines(&path),
            (20..23)
                .map(|i| line(i).trim_end().to_string())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            lines(&numbered(&path, 1)),
            (15..20)
                .map(|i| line(i).trim_end().to_string())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            lines(&numbered(&path, 2)),
            (10..15)
                .map(|i| line(i).trim_end().to_string())
                .collect::<Vec<_>>()
        );
        assert!(!numbered(&path, 3).exists());
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 100, "{}", p.display());
        }
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let mut f = RotatingFile::open(&path, 30, 3).unwrap();
        let long = format!("{}\n", "x".repeat(99));
        f.write_all(line(1).as_bytes()).unwrap();
        f.write_all(long.as_bytes()).unwrap();
        f.write_all(line(2).as_bytes()).unwrap();
        f.flush().unwrap();
        assert_eq!(read(&numbered(&path, 2)), line(1));
        assert_eq!(read(&numbered(&path, 1)), long);
        assert_eq!(read(&path), line(2));
    }

    #[test]
    fn appends_to_an_existing_file_and_ends_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        fs::write(&path, "{\"kind\":\"stall\"}\n{\"kind\":\"dead").unwrap();
        let mut f = RotatingFile::open(&path, 1000, 1).unwrap();
        f.write_all(line(7).as_bytes()).unwrap();
        f.flush().unwrap();
        assert_eq!(
            read(&path),
            format!("{{\"kind\":\"stall\"}}\n{{\"kind\":\"dead\n{}", line(7))
        );
        // The existing bytes count towards the limit.
        let mut f = RotatingFile::open(&path, 60, 1).unwrap();
        f.write_all(line(8).as_bytes()).unwrap();
        f.flush().unwrap();
        assert_eq!(read(&path), line(8));
        assert!(read(&numbered(&path, 1)).ends_with(&line(7)));
    }

    #[test]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let path = dir.path().join("a");
        symlink(&victim, &path).unwrap();
        assert!(RotatingFile::open(&path, 100, 2).is_err());
        fs::remove_file(&path).unwrap();

        // A link planted where a rotated file goes is replaced, not written through.
        symlink(&victim, numbered(&path, 1)).unwrap();
        let mut f = RotatingFile::open(&path, 25, 2).unwrap();
        f.write_all(line(1).as_bytes()).unwrap();
        f.write_all(line(2).as_bytes()).unwrap();
        f.write_all(line(3).as_bytes()).unwrap();
        f.flush().unwrap();
        assert_eq!(read(&victim), "precious\n");
        assert_eq!(read(&numbered(&path, 2)), line(1));
        assert_eq!(read(&numbered(&path, 1)), line(2));
        assert_eq!(read(&path), line(3));
        assert!(!fs::symlink_metadata(numbered(&path, 2))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn keep_zero_keeps_only_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let mut f = RotatingFile::open(&path, 20, 0).unwrap();
        for i in 0..3 {
            f.write_all(line(i).as_bytes()).unwrap();
        }
        f.flush().unwrap();
        assert_eq!(read(&path), line(2));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(RotatingFile::open(&path, 0, 1).is_err());
    }

    #[test]
    fn a_failed_rotation_loses_nothing_and_does_not_churn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        // A non-empty directory where PATH.1 goes: rename() onto it fails, even for root.
        fs::create_dir(numbered(&path, 1)).unwrap();
        fs::write(numbered(&path, 1).join("x"), "").unwrap();
        let mut f = RotatingFile::open(&path, 40, 1).unwrap();
        for i in 0..5 {
            f.write_all(line(i).as_bytes()).unwrap();
        }
        f.flush().unwrap();
        let all: String = (0..5).map(line).collect();
        assert_eq!(read(&path), all);
        // Retries wait for another `max_bytes` of lines instead of coming at every line.
        assert_eq!(f.size, 20);
    }

    /// A destination that fails like a full disk.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_destination_is_named_and_counted() {
        let json = r#"{"kind":"process_exit","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":1,"comm":"x","stack":[],"exit_code":0,"signal":null,"by_tid":1,"message":null}"#;
        let alert = Alert::from_json_line(json).unwrap();
        let mut sink = AlertSink::new(Some(Box::new(Full)), Some(Path::new("/full/a.jsonl")), true);
        for _ in 0..3 {
            sink.write(&alert);
        }
        let failure = sink.finish().expect("the failure is reported");
        assert!(
            failure.starts_with("cannot write alerts to /full/a.jsonl: No space left on device")
                && failure.ends_with("(3 alerts not written there)"),
            "{failure}"
        );
    }

    #[test]
    fn alert_sink_rotates_between_whole_alert_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let json = r#"{"kind":"process_exit","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":1,"comm":"x","stack":[],"exit_code":0,"signal":null,"by_tid":1,"message":null}"#;
        let alert = Alert::from_json_line(json).unwrap();
        let line_len = alert.to_json_line().len() as u64 + 1;
        let mut sink = AlertSink::open_rotating(&path, line_len * 2, 3, true).unwrap();
        for _ in 0..5 {
            sink.write(&alert);
        }
        assert_eq!(sink.finish(), None);
        let mut total = 0;
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            let text = read(&p);
            assert!(text.ends_with('\n'), "{}", p.display());
            for l in text.lines() {
                assert_eq!(Alert::from_json_line(l).unwrap(), alert);
                total += 1;
            }
        }
        assert_eq!(total, 5);
        assert_eq!(read(&path).lines().count(), 1);
    }
}
