//! The ring buffer of events the kernel programs send, and typed views of its records.

use aya::maps::{MapData, RingBuf};
use observer_common::{
    event_kind, ExecEvent, ExitEvent, ForkEvent, GoPanicEvent, GoWaitEvent, HolderSampleEvent,
    ShortSampleEvent, SignalEvent, WaitEvent,
};
use tokio::io::unix::AsyncFd;

/// The `EVENTS` ring buffer, registered with the async runtime so a session can wait for its
/// records without knowing the map behind them.
pub struct EventRing {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl EventRing {
    /// Registers the ring; must be called from within the tokio runtime.
    pub(crate) fn new(ring: RingBuf<MapData>) -> std::io::Result<Self> {
        // SAFETY: the RingBuf owns its fd and is moved into the AsyncFd, so the fd stays open
        // for exactly as long as it is registered.
        let ring = unsafe { AsyncFd::register(ring) }?;
        Ok(Self { ring })
    }

    /// Waits until records are there, then takes them all, each parsed. Cancel-safe: nothing
    /// is taken before the wait is over.
    pub async fn next_batch(&mut self) -> std::io::Result<Vec<Result<Event, EventError>>> {
        let mut guard = self.ring.readable_mut().await?;
        let batch = take_all(guard.get_inner_mut());
        guard.clear_ready();
        Ok(batch)
    }

    /// The records there now, without waiting.
    pub fn take_ready(&mut self) -> Vec<Result<Event, EventError>> {
        take_all(self.ring.get_mut())
    }
}

fn take_all(ring: &mut RingBuf<MapData>) -> Vec<Result<Event, EventError>> {
    let mut batch = Vec::new();
    while let Some(item) = ring.next() {
        batch.push(Event::parse(&item));
    }
    batch
}

/// One record from the `EVENTS` ring buffer, copied out of the kernel's memory.
pub enum Event {
    Wait(Box<WaitEvent>),
    Fork(Box<ForkEvent>),
    Exit(ExitEvent),
    Signal(SignalEvent),
    GoWait(Box<GoWaitEvent>),
    /// `runtime.gopanic`.
    GoPanic(Box<GoPanicEvent>),
    /// `runtime.recovery`: the goroutine's panic was recovered.
    GoRecovered(Box<GoPanicEvent>),
    /// `runtime.throw` / `runtime.fatal`: the process is dying.
    GoFatal(Box<GoPanicEvent>),
    /// Sidecar: a process ran a new program.
    Exec(ExecEvent),
    /// A sampled short wait with the waiter's stack, for the profile.
    ShortSample(Box<ShortSampleEvent>),
    /// An on-CPU sample of a thread that holds a contended lock.
    HolderSample(Box<HolderSampleEvent>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("ring-buffer record of {0} bytes is too short")]
    Short(usize),
    #[error("unknown ring-buffer record kind {0}")]
    UnknownKind(u32),
}

impl Event {
    pub fn parse(bytes: &[u8]) -> Result<Event, EventError> {
        let kind = bytes
            .get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(EventError::Short(bytes.len()))?;
        Ok(match kind {
            event_kind::WAIT => Event::Wait(Box::new(read(bytes)?)),
            event_kind::FORK => Event::Fork(Box::new(read(bytes)?)),
            event_kind::EXIT => Event::Exit(read(bytes)?),
            event_kind::SIGNAL => Event::Signal(read(bytes)?),
            event_kind::GO_WAIT => Event::GoWait(Box::new(read(bytes)?)),
            event_kind::GO_PANIC => Event::GoPanic(Box::new(read(bytes)?)),
            event_kind::GO_RECOVERED => Event::GoRecovered(Box::new(read(bytes)?)),
            event_kind::GO_FATAL => Event::GoFatal(Box::new(read(bytes)?)),
            event_kind::EXEC => Event::Exec(read(bytes)?),
            event_kind::SHORT_SAMPLE => Event::ShortSample(Box::new(read(bytes)?)),
            event_kind::HOLDER_SAMPLE => Event::HolderSample(Box::new(read(bytes)?)),
            other => return Err(EventError::UnknownKind(other)),
        })
    }
}

/// Copies a plain-data record out of a byte slice. Only used with the `#[repr(C)]` integer
/// structs of observer-common, for which every bit pattern is valid.
fn read<T: Copy>(bytes: &[u8]) -> Result<T, EventError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(EventError::Short(bytes.len()));
    }
    // SAFETY: length checked above; read_unaligned copes with any alignment; T is plain data.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A NUL-padded kernel `comm` as text.
pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_common::GoStack;

    #[test]
    fn parses_exit_record() {
        let ev = ExitEvent {
            kind: event_kind::EXIT,
            tgid: 10,
            tid: 11,
            group_dead: 0,
            time_ns: 5,
            syscall: 60,
            arg0: 0,
            comm: *b"worker-2\0\0\0\0\0\0\0\0",
        };
        // SAFETY: viewing a plain struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const ExitEvent).cast::<u8>(),
                std::mem::size_of::<ExitEvent>(),
            )
        };
        match Event::parse(bytes) {
            Ok(Event::Exit(e)) => {
                assert_eq!((e.tgid, e.tid, e.syscall), (10, 11, 60));
                assert_eq!(comm_str(&e.comm), "worker-2");
            }
            _ => panic!("not an exit event"),
        }
    }

    #[test]
    fn parses_go_wait_record_with_its_stack() {
        let mut stack = GoStack {
            len: 3,
            ..GoStack::default()
        };
        stack.pcs[..3].copy_from_slice(&[0x401000, 0x402000, 0x403000]);
        let ev = GoWaitEvent {
            kind: event_kind::GO_WAIT,
            tgid: 7,
            tid: 8,
            reason: 2,
            goid: 42,
            waker_goid: 43,
            gopc: 0x404000,
            waker_stack_id: -1,
            _pad: 0,
            start_ns: 1,
            duration_ns: 2,
            lock: 0,
            g: 0x1000,
            labels: 0,
            stack,
        };
        // SAFETY: viewing a plain struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const GoWaitEvent).cast::<u8>(),
                std::mem::size_of::<GoWaitEvent>(),
            )
        };
        match Event::parse(bytes) {
            Ok(Event::GoWait(e)) => {
                assert_eq!((e.goid, e.waker_goid), (42, 43));
                assert_eq!(e.stack.len, 3);
                assert_eq!(e.stack.pcs[..3], [0x401000, 0x402000, 0x403000]);
            }
            _ => panic!("not a goroutine wait event"),
        }
        assert_eq!(
            Event::parse(&bytes[..bytes.len() - 1]).err(),
            Some(EventError::Short(bytes.len() - 1))
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(Event::parse(&[1, 0]).err(), Some(EventError::Short(2)));
        assert_eq!(
            Event::parse(&[99, 0, 0, 0, 0, 0, 0, 0]).err(),
            Some(EventError::UnknownKind(99))
        );
        assert_eq!(
            Event::parse(&[3, 0, 0, 0, 0, 0, 0, 0]).err(),
            Some(EventError::Short(8))
        );
    }
}
