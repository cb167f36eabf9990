//! The rules, fed by the session with observations and answering with findings; none knows the
//! kernel or the outputs, so each runs on synthetic input in its unit tests: lock waits
//! (`lockwait`), hold episodes (`lockhold`), stalls on held locks (`stall`), deadlock cycles
//! (`waitgraph`), silent thread
//! deaths (`thread_exits`), process exits (`procexit`), goroutine stalls, waits and panics
//! (`gowatch`, which sees the kernel through its `GoroutineProbes` trait, or memory snapshots
//! followed by `goparked`) and leaks (`goleak`),
//! and observer's own degraded modes (`degraded`: loss counters into started/ended periods).
pub mod degraded;
pub mod goduty;
pub mod gohold;
pub mod goleak;
pub mod golikely;
pub mod goparked;
pub mod gowatch;
pub mod holder;
pub mod home;
pub mod lockhold;
pub mod lockwait;
pub mod procexit;
pub mod stall;
pub mod thread_exits;
pub mod waitgraph;
