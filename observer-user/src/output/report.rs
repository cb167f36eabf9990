//! `observer report`: turn a recording into the outputs people read, after the fact.

use std::{collections::BTreeMap, io::Write, path::Path, sync::Arc};

use anyhow::{bail, Context, Result};

use crate::{
    output::alert::Alert,
    output::alert_text::one_line,
    output::pprof::{write_pprof, PprofMeta},
    output::profile::BlockedProfile,
    output::recording::Recording,
    output::svg,
    proc::normaddr::Module,
    stacks::frame::machine_frames,
    util::duration::human,
    util::progress::Progress,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Folded stacks for flamegraph.pl / inferno / speedscope.
    Folded,
    /// An SVG flame graph.
    Svg,
    /// A gzipped pprof profile (needs -o).
    Pprof,
    /// The recorded alerts, replayed as JSON lines.
    Json,
    /// A human summary.
    Text,
}

pub fn profile_of(rec: &Recording) -> BlockedProfile {
    profile_counted(rec, None)
}

/// [`profile_of`], counting each merged stack on `progress`.
fn profile_counted(rec: &Recording, progress: Option<&Progress>) -> BlockedProfile {
    let mut profile = BlockedProfile::new();
    if let Some(snapshot) = &rec.profile {
        for s in &snapshot.stacks {
            profile.add_many_frames(
                s.category,
                (s.process.as_str(), &s.container),
                &s.thread,
                &s.frames,
                s.weight_ns,
                s.count,
            );
            if let Some(p) = progress {
                p.inc(1);
            }
        }
    }
    profile
}

/// Writes the report; `out` None or `-` means stdout.
pub fn report(rec: &Recording, format: Format, out: Option<&Path>) -> Result<()> {
    let to_stdout = out.is_none_or(|p| p == Path::new("-"));
    let stacks = rec.profile.as_ref().map_or(0, |p| p.stacks.len());
    // Counts stacks merged and alerts written; drawing and encoding are single calls, during
    // which the spinner and the elapsed time show the step is alive.
    let progress = Progress::start(
        &format!(
            "writing the {} report ({stacks} stacks, {} alerts)",
            format_name(format),
            rec.alerts.len()
        ),
        None,
    );
    let profile = profile_counted(rec, Some(&progress));
    let title = match &rec.meta {
        Some(m) => format!("Blocked time: {} (pid {})", m.process, m.pid),
        None => "Blocked time".to_string(),
    };
    let text = match format {
        Format::Folded => profile.lines().iter().map(|l| format!("{l}\n")).collect(),
        Format::Json => rec
            .alerts
            .iter()
            .map(|a| {
                progress.inc(1);
                format!("{}\n", a.to_json_line())
            })
            .collect(),
        Format::Text => text_report(rec, &profile, &progress),
        Format::Svg => svg::render(&profile, &title)?,
        Format::Pprof => {
            let Some(path) = out.filter(|_| !to_stdout) else {
                bail!("--format pprof writes a binary file: give it a path with -o");
            };
            write_pprof(&profile, &pprof_meta(rec), path)?;
            progress.finish();
            return Ok(());
        }
    };
    // Before the output: the report may go to the same terminal as the progress line.
    progress.finish();
    if to_stdout {
        std::io::stdout().write_all(text.as_bytes())?;
    } else if let Some(path) = out {
        let mut f = crate::output::output_file::create(path)?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Folded => "folded",
        Format::Svg => "svg",
        Format::Pprof => "pprof",
        Format::Json => "json",
        Format::Text => "text",
    }
}

fn text_report(rec: &Recording, profile: &BlockedProfile, progress: &Progress) -> String {
    let mut s = String::new();
    match &rec.meta {
        Some(m) => s.push_str(&format!(
            "recording of {} (pid {}), {} build id {}, started {} (observer {}, kernel {})\n",
            m.process,
            m.pid,
            m.executable.as_deref().unwrap_or("?"),
            m.build_id.as_deref().unwrap_or("?"),
            m.started,
            m.observer_version,
            m.kernel
        )),
        None => s.push_str("recording without metadata\n"),
    }
    if rec.truncated {
        s.push_str("note: the recording was cut short (observer stopped mid-write); everything up to its last whole block is shown\n");
    }
    if let Some(p) = &rec.profile {
        s.push_str(&format!(
            "observed for {}; {} events dropped, {} aggregate updates lost\n",
            human(std::time::Duration::from_nanos(p.elapsed_ns)),
            p.events_dropped,
            p.agg_dropped
        ));
    }
    s.push_str(&format!("alerts: {}\n", rec.alerts.len()));
    let mut modules = BTreeMap::new();
    for a in &rec.alerts {
        progress.inc(1);
        s.push_str(&format!(
            "  {}\n",
            one_line(a).trim_start_matches("observer: ")
        ));
        for line in alert_addresses(a, &mut modules) {
            s.push_str(&format!("      {line}\n"));
        }
    }
    if !modules.is_empty() {
        s.push_str("  alert stack addresses are file offsets in:\n");
        for (short, module) in &modules {
            s.push_str(&format!(
                "    {short} = {} (build id {})\n",
                module.path,
                module.build_id.as_deref().unwrap_or("none")
            ));
        }
    }
    s.push_str("top blocked stacks:\n");
    for t in profile.top(10) {
        s.push_str(&stack_line(&t));
    }
    let (idle_ns, idle_waits) = profile.totals(true);
    if idle_waits > 0 || idle_ns > 0 {
        s.push_str(&format!(
            "idle (waiting for work or time, not blocked): {} in {idle_waits} waits, heaviest:\n",
            human(std::time::Duration::from_nanos(idle_ns))
        ));
        for t in profile.top_idle(3) {
            s.push_str(&stack_line(&t));
        }
    }
    s
}

fn stack_line(t: &crate::output::profile::TopStack) -> String {
    format!(
        "  {:>9} {:>7}x  {} [{}]: {}\n",
        human(std::time::Duration::from_nanos(t.weight_ns)),
        t.count,
        t.process,
        t.thread,
        crate::stacks::own_code::own_frames(&t.frames)
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join(" <- ")
    )
}

/// Frames kept per alert stack in the text report; the names are in the alert line.
const ADDRESSES_SHOWN: usize = 8;

/// One line per stack of the alert: its code addresses as `module+0xoffset`, innermost first
/// (one per machine frame: inlined functions share their caller's). The modules seen are
/// collected for a legend, keyed by file name.
fn alert_addresses(a: &Alert, modules: &mut BTreeMap<String, Arc<Module>>) -> Vec<String> {
    a.frames
        .iter()
        .map(|(field, frames)| {
            let shown: Vec<String> = machine_frames(frames)
                .filter_map(|run| run[0].addr.as_ref())
                .take(ADDRESSES_SHOWN)
                .map(|addr| {
                    let short = module_short_name(&addr.module, modules);
                    format!("{short}+{:#x}", addr.file_offset)
                })
                .collect();
            format!("{field} at {}", shown.join(" "))
        })
        .collect()
}

/// The file name of `module`, made unique among the modules already in the legend.
fn module_short_name(module: &Arc<Module>, modules: &mut BTreeMap<String, Arc<Module>>) -> String {
    let base = module
        .path
        .rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or(&module.path)
        .to_string();
    let mut name = base.clone();
    let mut n = 1;
    loop {
        match modules.get(&name) {
            Some(m) if m == module => return name,
            Some(_) => {
                n += 1;
                name = format!("{base}#{n}");
            }
            None => {
                modules.insert(name.clone(), Arc::clone(module));
                return name;
            }
        }
    }
}

/// What a pprof profile of a recording says about the program.
pub fn pprof_meta(rec: &Recording) -> PprofMeta {
    PprofMeta {
        main_binary: rec
            .meta
            .as_ref()
            .and_then(|m| m.executable.clone().map(Into::into)),
        build_id: rec.meta.as_ref().and_then(|m| m.build_id.clone()),
        duration_ns: rec.profile.as_ref().map_or(0, |p| p.elapsed_ns),
        time_nanos: 0,
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;
    use crate::output::alert::{AlertDetail, ProcessExit};
    use crate::stacks::frame::Frame;

    fn at(name: &str, module: &Arc<Module>, off: u64, inlined: bool) -> Frame {
        Frame::at(name, module, off, inlined)
    }

    #[test]
    fn alert_stacks_show_module_offsets_and_a_legend() {
        let exe = Arc::new(Module {
            path: "/srv/bank".into(),
            build_id: Some("abcd".into()),
        });
        let other = Arc::new(Module {
            path: "/opt/other/bank".into(),
            build_id: None,
        });
        let mut a = Alert {
            time: "t".into(),
            pid: 1,
            tid: 1,
            comm: "bank".into(),
            ns_pid: None,
            ns_tid: None,
            container_id: None,
            pod_uid: None,
            stack: vec![],
            detail: AlertDetail::ProcessExit(ProcessExit {
                exit_code: Some(1),
                signal: None,
                by_tid: 1,
                message: None,
            }),
            frames: Vec::new(),
        };
        a.keep_frames(
            "stack",
            vec![
                Frame::named("[futex]"),
                at("helper (bank.c:9)", &exe, 0x1234, true),
                at("worker (bank.c:30)", &exe, 0x1234, false),
                at("main", &other, 0x10, false),
            ],
        );
        a.keep_frames("waker_stack", vec![Frame::named("[unknown]")]);
        let mut modules = BTreeMap::new();
        assert_eq!(
            alert_addresses(&a, &mut modules),
            vec!["stack at bank+0x1234 bank#2+0x10".to_string()]
        );
        assert_eq!(modules.keys().collect::<Vec<_>>(), vec!["bank", "bank#2"]);
        assert_eq!(modules["bank"].build_id.as_deref(), Some("abcd"));
    }
}

#[cfg(test)]
mod category_tests {
    use super::*;
    use crate::output::profile::{Category, StackEntry};
    use crate::output::recording::ProfileSnapshot;
    use crate::stacks::frame::from_names;

    fn entry(category: Category, frames: &[&str], ms: u64) -> StackEntry {
        let names: Vec<String> = frames.iter().map(|s| s.to_string()).collect();
        StackEntry {
            process: "srv".into(),
            thread: "t".into(),
            frames: from_names(&names),
            weight_ns: ms * 1_000_000,
            count: 1,
            category,
            container: Default::default(),
        }
    }

    /// A recording's text report lists blocked stacks, then idle time apart.
    #[test]
    fn text_report_keeps_idle_time_apart() {
        let rec = Recording {
            version: 2,
            meta: None,
            alerts: Vec::new(),
            profile: Some(ProfileSnapshot {
                elapsed_ns: 1,
                stacks: vec![
                    entry(Category::Idle, &["[select]", "main.serve"], 60_000),
                    entry(Category::Lock, &["[sync.Mutex.Lock]", "main.lookup"], 300),
                ],
                events_dropped: 0,
                agg_dropped: 0,
            }),
            truncated: false,
        };
        let profile = profile_of(&rec);
        let text = text_report(&rec, &profile, &Progress::start("test", None));
        let blocked = text.find("top blocked stacks:").unwrap();
        let idle = text.find("idle (waiting for work or time").unwrap();
        assert!(blocked < idle, "{text}");
        assert!(text[blocked..idle].contains("main.lookup"), "{text}");
        assert!(!text[blocked..idle].contains("main.serve"), "{text}");
        assert!(text[idle..].contains("main.serve"), "{text}");
    }
}
