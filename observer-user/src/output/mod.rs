//! What a session produces: alerts (their JSON and one-line text) and their sink, output files,
//! the blocked-time profile and its exporters (folded stacks, SVG, pprof, recordings), the
//! report, metrics and the summary.
pub mod alert;
pub mod alert_text;
pub mod alertmanager;
pub mod folded;
pub mod long_waits;
pub mod metrics;
pub mod otlp;
pub mod output_file;
pub mod pprof;
pub mod profile;
pub mod recording;
pub mod report;
pub mod sampled_stacks;
pub mod sink;
pub mod summary;
pub mod svg;
