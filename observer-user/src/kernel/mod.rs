//! The kernel side: loading and attaching the eBPF probes, tracefs and BTF lookups, the
//! typed ring-buffer records, and the privilege checks. The only place that knows aya / bpf(2).
pub mod events;
pub mod holder_sampler;
pub mod kernel_btf;
pub mod kernel_log;
pub mod privileges;
pub mod probes;
pub mod program_barrier;
pub mod tracefs;
