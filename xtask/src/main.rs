//! Project automation: `cargo xtask <command>` (alias in .cargo/config.toml).
//!
//! Every machine (developer and CI) starts from the same bare Debian image, so `setup` is the single
//! place that knows what the build needs; `build`, `test` and `demo` call it first.

mod bench;
mod demo;
mod setup;
mod tasks;
mod util;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, test and demo automation for observer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build needs (LLVM 22, bpf-linker, rust-src, gcc, bpftrace) and mount tracefs.
    Setup,
    /// Setup, then build the release `observer` binary with its eBPF object embedded.
    Build,
    /// Setup, build, unit tests, privileged end-to-end tests (root), rustfmt and clippy.
    Test,
    /// Build and run the demo program under observer, then show its alerts.
    Demo,
    /// Measure observer's overhead against bare runs and peers (root); writes BENCHMARKS.md.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of contexts says what failed; a Rust backtrace of xtask itself would not help.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Setup => setup::run(),
        Command::Build => tasks::build().map(|_| ()),
        Command::Test => tasks::test(),
        Command::Demo => demo::run_demo(),
        Command::Bench(args) => bench::run_bench(args),
    }
}
