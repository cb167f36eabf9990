//! The probes' own diagnostics (`--kernel-log`, or `RUST_LOG=observer_ebpf[=LEVEL]`): a lock
//! word that could not be read, a futex call blocked in an unexpected way, a full map.
//!
//! The kernel side (observer-ebpf `kernel_log.rs`) logs through aya-log, rate-limited per call
//! site, and only when the loader turned it on: off, the verifier removes every log call.
//! Here a thread of its own waits on aya-log's ring buffer and hands each record, as one line,
//! to a sink the caller chooses (observer's escaped stderr). Off, none of this exists: no
//! reader, no thread, and aya-log's ring buffer is shrunk to one page.

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use log::LevelFilter;

/// The `log` target of the kernel records: the name `RUST_LOG` uses to turn them on.
pub const TARGET: &str = "observer_ebpf";

/// The environment variable read by [`level_from_env`].
pub const ENV: &str = "RUST_LOG";

/// Turned on, with the most verbose level wanted, and where its lines go.
#[derive(Debug, Clone, Copy)]
pub struct KernelLogConfig {
    pub level: LevelFilter,
    /// Receives each record as one line, unescaped (the values in it come from targets).
    pub sink: fn(&str),
}

/// How verbose the kernel log is: `--kernel-log` means everything, unless `RUST_LOG` names
/// [`TARGET`] with a level; without the flag, only such a `RUST_LOG` turns it on. A plain
/// `RUST_LOG=debug` (or the default) does not: the probes' log costs the kernel a little, and
/// is only for who asks for it by name.
pub fn wanted_level(flag: bool, rust_log: Option<&str>) -> LevelFilter {
    match (flag, level_from_env(rust_log)) {
        (_, Some(level)) if level != LevelFilter::Off => level,
        (true, _) => LevelFilter::Trace,
        (false, _) => LevelFilter::Off,
    }
}

/// The level `RUST_LOG` gives [`TARGET`] by name, read like env_logger does (comma-separated
/// `target[=level]` directives, the last one wins, an optional `/regex` after them; a bare
/// target means every level). Global levels (`RUST_LOG=debug`) and prefixes
/// (`RUST_LOG=observer`) do not name it.
pub fn level_from_env(rust_log: Option<&str>) -> Option<LevelFilter> {
    let spec = rust_log?;
    let directives = spec.split_once('/').map_or(spec, |(d, _)| d);
    let mut found = None;
    for directive in directives.split(',').map(str::trim) {
        let (name, level) = match directive.split_once('=') {
            Some((name, level)) => match level.trim().parse::<LevelFilter>() {
                Ok(level) => (name.trim(), level),
                Err(_) => continue,
            },
            None => (directive, LevelFilter::Trace),
        };
        if name == TARGET {
            found = Some(level);
        }
    }
    found
}

/// `AYA_LOG_LEVEL` / `KERNEL_LOG_LEVEL` for the kernel: 0 off, 1 error ... 5 trace (the order
/// of both aya-log's and the log crate's levels).
pub fn kernel_level(level: LevelFilter) -> u8 {
    level as usize as u8
}

/// The smallest ring buffer the kernel accepts: one page.
pub fn smallest_ring_bytes() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(page).unwrap_or(4096)
}

/// One record as the line the admin reads: `observer: kernel: WARN: <message>`. Every kernel
/// message ends with the count of messages its site suppressed before it, said only when some
/// were.
pub fn line(record: &log::Record<'_>) -> String {
    let message = record.args().to_string();
    let message = message.strip_suffix(" (0 suppressed)").unwrap_or(&message);
    format!("observer: kernel: {}: {message}", record.level())
}

/// Hands aya-log's records to the sink.
struct LineLogger {
    sink: fn(&str),
}

impl log::Log for LineLogger {
    // The kernel only sends what its level lets through.
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        (self.sink)(&line(record));
    }

    fn flush(&self) {}
}

/// How often the reader thread looks at its stop flag while nothing is logged.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The thread reading aya-log's ring buffer; stopped (after a last read) when dropped.
pub struct KernelLogReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelLogError {
    #[error("aya-log: {0}")]
    Init(#[from] aya_log::Error),
    #[error("starting the kernel log thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl KernelLogReader {
    /// Takes aya-log's ring buffer out of `ebpf` and starts reading it.
    pub fn start(ebpf: &mut aya::Ebpf, sink: fn(&str)) -> Result<Self, KernelLogError> {
        let mut logger = aya_log::EbpfLogger::init_with_logger(ebpf, LineLogger { sink })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("observer-klog".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    wait_readable(logger.as_fd().as_raw_fd(), POLL_INTERVAL);
                    logger.flush();
                }
                logger.flush();
            })
            .map_err(KernelLogError::Thread)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for KernelLogReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until the ring buffer has data or `timeout` passes (errors count as a timeout: the
/// caller reads anyway, and an empty read is harmless).
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_the_target() {
        assert_eq!(level_from_env(None), None);
        assert_eq!(level_from_env(Some("")), None);
        assert_eq!(
            level_from_env(Some("observer_ebpf")),
            Some(LevelFilter::Trace)
        );
        assert_eq!(
            level_from_env(Some("info,observer_ebpf=warn")),
            Some(LevelFilter::Warn)
        );
        assert_eq!(
            level_from_env(Some(" observer_ebpf = info /lock")),
            Some(LevelFilter::Info)
        );
        assert_eq!(
            level_from_env(Some("observer_ebpf=debug,observer_ebpf=off")),
            Some(LevelFilter::Off)
        );
    }

    #[test]
    fn global_levels_and_prefixes_do_not_turn_it_on() {
        for spec in [
            "debug",
            "trace",
            "observer",
            "observer=trace",
            "observer_ebpf2=info",
        ] {
            assert_eq!(level_from_env(Some(spec)), None, "{spec}");
            assert_eq!(wanted_level(false, Some(spec)), LevelFilter::Off, "{spec}");
        }
        // A level that does not parse is no directive (env_logger ignores it too).
        assert_eq!(level_from_env(Some("observer_ebpf=loud")), None);
    }

    #[test]
    fn the_flag_means_everything_unless_rust_log_narrows_it() {
        assert_eq!(wanted_level(false, None), LevelFilter::Off);
        assert_eq!(wanted_level(true, None), LevelFilter::Trace);
        assert_eq!(
            wanted_level(true, Some("observer_ebpf=warn")),
            LevelFilter::Warn
        );
        assert_eq!(
            wanted_level(false, Some("observer_ebpf=info")),
            LevelFilter::Info
        );
        // `off` by name cannot undo the flag: the flag is the explicit request.
        assert_eq!(
            wanted_level(true, Some("observer_ebpf=off")),
            LevelFilter::Trace
        );
    }

    #[test]
    fn kernel_levels_follow_aya_log_numbering() {
        assert_eq!(kernel_level(LevelFilter::Off), 0);
        assert_eq!(kernel_level(LevelFilter::Error), 1);
        assert_eq!(kernel_level(LevelFilter::Warn), 2);
        assert_eq!(kernel_level(LevelFilter::Info), 3);
        assert_eq!(kernel_level(LevelFilter::Trace), 5);
    }

    fn line_of(level: log::Level, args: std::fmt::Arguments<'_>) -> String {
        line(
            &log::Record::builder()
                .level(level)
                .target(TARGET)
                .args(args)
                .build(),
        )
    }

    #[test]
    fn a_record_is_one_prefixed_line() {
        assert_eq!(
            line_of(
                log::Level::Info,
                format_args!(
                    "pid {} tid {}: futex words at {:x} unreadable ({} suppressed)",
                    7, 8, 4096, 3
                )
            ),
            "observer: kernel: INFO: pid 7 tid 8: futex words at 1000 unreadable (3 suppressed)"
        );
    }

    #[test]
    fn no_suppressed_count_when_none_were() {
        assert_eq!(
            line_of(
                log::Level::Warn,
                format_args!("map {} full ({} suppressed)", "AGG", 0)
            ),
            "observer: kernel: WARN: map AGG full"
        );
    }

    #[test]
    fn records_reach_the_sink() {
        use log::Log as _;
        static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        fn sink(line: &str) {
            SEEN.lock().unwrap().push(line.to_owned());
        }
        let logger = LineLogger { sink };
        logger.log(
            &log::Record::builder()
                .level(log::Level::Warn)
                .target(TARGET)
                .args(format_args!("map AGG full"))
                .build(),
        );
        assert_eq!(
            *SEEN.lock().unwrap(),
            ["observer: kernel: WARN: map AGG full"]
        );
    }
}
