//! The on-CPU sampler of lock holders: one `cpu-clock` perf event per online CPU runs
//! `holder_sample`, which sends a sample (user registers and stack) only for the threads in
//! `HOLDERS`. Userspace adds a thread there while others wait for a lock it holds, and
//! removes it when they stop.

use aya::{
    maps::{Array, HashMap, MapData, MapError},
    programs::{
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        PerfEvent, ProgramError,
    },
    Ebpf,
};
use thiserror::Error;

/// Samples per second on each CPU: 99, not 100, so the ticks do not run in lockstep with
/// timers of the target that fire every 10 ms. A 2 s hold gets ~200 samples of a thread that
/// runs all the time.
pub const HOLDER_SAMPLE_HZ: u64 = 99;

const PROGRAM: &str = "holder_sample";
const MAP: &str = "HOLDERS";
const ON: &str = "HOLDERS_ON";

#[derive(Debug, Error)]
pub enum SamplerError {
    #[error("eBPF program `holder_sample` is missing from the object")]
    MissingProgram,
    #[error("eBPF program `holder_sample`: {0}")]
    Program(#[source] ProgramError),
    #[error("eBPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map `{0}`: {1}")]
    Map(&'static str, #[source] MapError),
}

/// Loads `holder_sample` and attaches it to a `cpu-clock` event on every online CPU. Returns
/// how many CPUs it runs on; an error when it runs on none.
pub(super) fn attach(ebpf: &mut Ebpf) -> Result<usize, SamplerError> {
    let program: &mut PerfEvent = ebpf
        .program_mut(PROGRAM)
        .ok_or(SamplerError::MissingProgram)?
        .try_into()
        .map_err(SamplerError::Program)?;
    program.load().map_err(SamplerError::Program)?;
    let cpus = aya::util::online_cpus()
        .map_err(|(_, e)| SamplerError::Program(ProgramError::IOError(e)))?;
    let mut attached = 0;
    let mut last_error = None;
    for cpu in cpus {
        match program.attach(
            PerfEventConfig::Software(SoftwareEvent::CpuClock),
            PerfEventScope::AllProcessesOneCpu { cpu },
            SamplePolicy::Frequency(HOLDER_SAMPLE_HZ),
            false,
        ) {
            Ok(_) => attached += 1,
            Err(e) => last_error = Some(e),
        }
    }
    match (attached, last_error) {
        (0, Some(e)) => Err(SamplerError::Program(e)),
        (n, Some(e)) => {
            log::warn!("lock holders are sampled on {n} CPUs only: {e}");
            Ok(n)
        }
        (n, None) => Ok(n),
    }
}

fn holders(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, u32, u32>, SamplerError> {
    let map = ebpf.map_mut(MAP).ok_or(SamplerError::MissingMap(MAP))?;
    HashMap::try_from(map).map_err(|e| SamplerError::Map(MAP, e))
}

/// Tells the program whether any holder is to be sampled (see `HOLDERS_ON`).
fn set_on(ebpf: &mut Ebpf, on: bool) -> Result<(), SamplerError> {
    let map = ebpf.map_mut(ON).ok_or(SamplerError::MissingMap(ON))?;
    let mut on_map: Array<&mut MapData, u32> =
        Array::try_from(map).map_err(|e| SamplerError::Map(ON, e))?;
    on_map
        .set(0, u32::from(on), 0)
        .map_err(|e| SamplerError::Map(ON, e))
}

/// Samples thread `tid` of process `tgid` on CPU from now on. Fails when the sampler map is
/// full (`MAX_SAMPLED_HOLDERS`).
pub(super) fn add(ebpf: &mut Ebpf, tgid: u32, tid: u32) -> Result<(), SamplerError> {
    holders(ebpf)?
        .insert(tid, tgid, 0)
        .map_err(|e| SamplerError::Map(MAP, e))?;
    set_on(ebpf, true)
}

/// Stops sampling thread `tid`; the program goes back to its one-load path with the last one.
pub(super) fn remove(ebpf: &mut Ebpf, tid: u32) {
    let Ok(mut map) = holders(ebpf) else {
        return;
    };
    let _ = map.remove(&tid);
    let empty = map.keys().next().is_none();
    if empty {
        if let Err(e) = set_on(ebpf, false) {
            log::warn!("the holder sampler stays on: {e}");
        }
    }
}
