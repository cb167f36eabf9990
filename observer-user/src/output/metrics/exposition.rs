//! The registry as Prometheus text exposition format 0.0.4.

use std::fmt::Write as _;
use std::time::Instant;

use super::histogram::BOUNDS_NS;
use super::registry::{Metrics, Process, WaitFamily, WaitKind};

/// The labels of every per-process series: `pid`, `comm` and, in a container, `container_id`
/// (one set per process entry, so a container adds no series).
pub(super) fn process_labels(pid: u32, p: &Process) -> String {
    let mut l = format!("pid=\"{pid}\",comm=\"{}\"", escape_label(&p.comm));
    if let Some(id) = &p.container_id {
        let _ = write!(l, ",container_id=\"{}\"", escape_label(id));
    }
    l
}

impl Metrics {
    /// The exposition text (format 0.0.4).
    pub fn render(&self) -> String {
        self.render_at(Instant::now())
    }

    pub(super) fn render_at(&self, now: Instant) -> String {
        let mut reg = self.lock();
        reg.expire(now, self.grace);
        let mut out = String::with_capacity(1024 + reg.processes.len() * 512);
        let r = &*reg;

        family(&mut out, "observer_up", "gauge", "1 while observer runs.");
        out.push_str("observer_up 1\n");
        family(
            &mut out,
            "observer_build_info",
            "gauge",
            "observer's version, as a label; the value is always 1.",
        );
        let _ = writeln!(
            out,
            "observer_build_info{{version=\"{}\"}} 1",
            escape_label(self.version)
        );
        family(
            &mut out,
            "observer_watched_processes",
            "gauge",
            "Processes observer watches now.",
        );
        let _ = writeln!(out, "observer_watched_processes {}", r.watched);
        family(
            &mut out,
            "observer_go_processes",
            "gauge",
            "Watched processes with the goroutine probes attached.",
        );
        let _ = writeln!(out, "observer_go_processes {}", r.go_watched);
        family(
            &mut out,
            "observer_events_dropped_total",
            "counter",
            "Observations lost in the kernel: ring buffer full (events), aggregate map full \
             (aggregates), in-flight table full (in_flight), samples without a stack (stacks_missing).",
        );
        for (what, n) in [
            ("events", r.drops.events),
            ("aggregates", r.drops.aggregates),
            ("in_flight", r.drops.in_flight),
            ("stacks_missing", r.drops.stacks_missing),
        ] {
            let _ = writeln!(out, "observer_events_dropped_total{{what=\"{what}\"}} {n}");
        }
        family(
            &mut out,
            "observer_degraded_total",
            "counter",
            "Periods in which observer limited itself, by reason (ring_buffer_full, \
             go_probe_budget, ...; see README \"When observer limits itself\").",
        );
        for (reason, (n, _)) in &r.degraded {
            let _ = writeln!(out, "observer_degraded_total{{reason=\"{reason}\"}} {n}");
        }
        family(
            &mut out,
            "observer_degraded",
            "gauge",
            "Conditions of each reason in effect now (1 while a limit is in effect; a Go probe \
             budget counts each process).",
        );
        for (reason, (_, n)) in &r.degraded {
            let _ = writeln!(out, "observer_degraded{{reason=\"{reason}\"}} {n}");
        }
        family(
            &mut out,
            "observer_export_failures_total",
            "counter",
            "Requests an export sink could not deliver after its retries, and items it dropped \
             (queue full), by sink (alertmanager, otlp).",
        );
        for (sink, n) in &r.export_failures {
            let _ = writeln!(out, "observer_export_failures_total{{sink=\"{sink}\"}} {n}");
        }
        family(
            &mut out,
            "observer_metrics_series_dropped_total",
            "counter",
            "Metric updates refused because the per-process series limit was reached.",
        );
        let _ = writeln!(
            out,
            "observer_metrics_series_dropped_total {}",
            r.series_dropped
        );
        family(
            &mut out,
            "observer_alerts_by_kind_total",
            "counter",
            "Alerts raised on this host, by kind (every kind starts at 0).",
        );
        for (kind, n) in &r.alerts_by_kind {
            let _ = writeln!(
                out,
                "observer_alerts_by_kind_total{{kind=\"{}\"}} {n}",
                escape_label(kind)
            );
        }

        let labels: Vec<(u32, &Process, String)> = r
            .processes
            .iter()
            .map(|(pid, p)| (*pid, p, process_labels(*pid, p)))
            .collect();

        let waits: [WaitFamily; 2] = [
            (
                "observer_waits_total",
                "Blocking waits observed, by process and kind (lock, idle, goroutine).",
                |w| w.count.to_string(),
            ),
            (
                "observer_wait_seconds_total",
                "Time spent in those waits, in seconds.",
                |w| seconds(w.total_ns),
            ),
        ];
        for (name, help, value) in waits {
            family(&mut out, name, "counter", help);
            for (_, p, l) in &labels {
                for kind in WaitKind::ALL {
                    let w = p.waits[kind.index()];
                    if w.count > 0 || w.total_ns > 0 {
                        let _ =
                            writeln!(out, "{name}{{{l},kind=\"{}\"}} {}", kind.label(), value(&w));
                    }
                }
            }
        }
        wait_histograms(&mut out, &labels);
        family(
            &mut out,
            "observer_alerts_total",
            "counter",
            "Alerts raised, by process and kind.",
        );
        for (_, p, l) in &labels {
            for (kind, n) in &p.alerts {
                let _ = writeln!(
                    out,
                    "observer_alerts_total{{{l},kind=\"{}\"}} {n}",
                    escape_label(kind)
                );
            }
        }
        let holds: [ProcessFamily; 2] = [
            (
                "observer_lock_hold_episodes_total",
                "Holds of a lock that made threads wait past the threshold (one lock_hold alert each).",
                |p| p.lock_holds,
            ),
            (
                "observer_lock_hold_waiters_total",
                "Waits past the threshold behind those holds.",
                |p| p.lock_hold_waiters,
            ),
        ];
        for (name, help, value) in holds {
            family(&mut out, name, "counter", help);
            for (_, p, l) in &labels {
                let _ = writeln!(out, "{name}{{{l}}} {}", value(p));
            }
        }
        family(
            &mut out,
            "observer_stalled_threads",
            "gauge",
            "Threads blocked on a held lock past --stall-after, now.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(out, "observer_stalled_threads{{{l}}} {}", p.stalled_threads);
        }
        family(
            &mut out,
            "observer_stalled_goroutines",
            "gauge",
            "Goroutines waiting on a sync primitive past --stall-after, now.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(
                out,
                "observer_stalled_goroutines{{{l}}} {}",
                p.stalled_goroutines
            );
        }
        family(
            &mut out,
            "observer_thread_deaths_total",
            "counter",
            "Threads that died while their process lived on.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(
                out,
                "observer_thread_deaths_total{{{l}}} {}",
                p.thread_deaths
            );
        }
        family(
            &mut out,
            "observer_go_panics_total",
            "counter",
            "Go panics, recovered or not.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(out, "observer_go_panics_total{{{l}}} {}", p.go_panics);
        }
        out
    }
}

/// The histogram family, for the processes' label sets (the same ones as every per-process
/// series, so labels added there flow in); only (process, kind) pairs with waits, like
/// `observer_waits_total`.
fn wait_histograms(out: &mut String, labels: &[(u32, &Process, String)]) {
    const NAME: &str = "observer_wait_duration_seconds";
    family(
        out,
        NAME,
        "histogram",
        "Blocking waits by duration, by process and kind (lock, idle, goroutine); _count and \
         _sum equal observer_waits_total and observer_wait_seconds_total.",
    );
    for (_, p, l) in labels {
        for kind in WaitKind::ALL {
            let w = &p.waits[kind.index()];
            if w.count == 0 && w.total_ns == 0 {
                continue;
            }
            let kind = kind.label();
            let mut cumulative = 0u64;
            for (bound, n) in BOUNDS_NS.iter().zip(&w.buckets) {
                cumulative = cumulative.saturating_add(*n);
                let _ = writeln!(
                    out,
                    "{NAME}_bucket{{{l},kind=\"{kind}\",le=\"{}\"}} {cumulative}",
                    seconds(*bound)
                );
            }
            let _ = writeln!(
                out,
                "{NAME}_bucket{{{l},kind=\"{kind}\",le=\"+Inf\"}} {}",
                w.count
            );
            let _ = writeln!(
                out,
                "{NAME}_sum{{{l},kind=\"{kind}\"}} {}",
                seconds(w.total_ns)
            );
            let _ = writeln!(out, "{NAME}_count{{{l},kind=\"{kind}\"}} {}", w.count);
        }
    }
}

/// A per-process counter family: name, help text, and the value it shows.
type ProcessFamily = (&'static str, &'static str, fn(&Process) -> u64);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline (exposition format 0.0.4).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and newline only.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Nanoseconds as seconds, exactly: integer part and 9 decimals, trailing zeros trimmed. (An f64
/// would round counters above ~104 days of accumulated wait.)
fn seconds(ns: u64) -> String {
    let (whole, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::super::registry::tests::sample_lines;
    use super::super::registry::GONE_GRACE;
    use super::*;
    use crate::output::alert::KINDS;
    use observer_common::{agg_bin, AggValue};

    #[test]
    fn golden_exposition() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        m.set_watched(3, 1);
        m.set_drops(1, 2, 3, 4);
        m.wait(42, "db", WaitKind::Lock, 500_000_000);
        m.wait(42, "db", WaitKind::Lock, 1_000_000_000);
        m.wait(42, "db", WaitKind::Lock, 0);
        m.wait(42, "db", WaitKind::Lock, 250_000_000);
        m.wait(42, "db", WaitKind::Idle, 3);
        m.wait(42, "db", WaitKind::Idle, 4);
        m.alert(42, "db", "deadlock");
        m.alert(42, "db", "stall");
        m.alert(42, "db", "stall");
        m.alert(7, "api", "go_panic");
        m.alert(42, "db", "lock_hold");
        m.lock_hold(42, "db", 3);
        m.set_blocked(42, "db", 2, 0);
        let text = m.render();
        let expected_tail = "\
# HELP observer_waits_total Blocking waits observed, by process and kind (lock, idle, goroutine).
# TYPE observer_waits_total counter
observer_waits_total{pid=\"42\",comm=\"db\",kind=\"lock\"} 4
observer_waits_total{pid=\"42\",comm=\"db\",kind=\"idle\"} 2
# HELP observer_wait_seconds_total Time spent in those waits, in seconds.
# TYPE observer_wait_seconds_total counter
observer_wait_seconds_total{pid=\"42\",comm=\"db\",kind=\"lock\"} 1.75
observer_wait_seconds_total{pid=\"42\",comm=\"db\",kind=\"idle\"} 0.000000007
# HELP observer_wait_duration_seconds Blocking waits by duration, by process and kind (lock, idle, goroutine); _count and _sum equal observer_waits_total and observer_wait_seconds_total.
# TYPE observer_wait_duration_seconds histogram
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.001\"} 1
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.0025\"} 1
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.005\"} 1
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.01\"} 1
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.025\"} 1
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.05\"} 1
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.1\"} 1
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.25\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"0.5\"} 3
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"1\"} 4
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"2.5\"} 4
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"5\"} 4
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"10\"} 4
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"30\"} 4
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"60\"} 4
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"lock\",le=\"+Inf\"} 4
observer_wait_duration_seconds_sum{pid=\"42\",comm=\"db\",kind=\"lock\"} 1.75
observer_wait_duration_seconds_count{pid=\"42\",comm=\"db\",kind=\"lock\"} 4
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.001\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.0025\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.005\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.01\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.025\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.05\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.1\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.25\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"0.5\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"1\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"2.5\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"5\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"10\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"30\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"60\"} 2
observer_wait_duration_seconds_bucket{pid=\"42\",comm=\"db\",kind=\"idle\",le=\"+Inf\"} 2
observer_wait_duration_seconds_sum{pid=\"42\",comm=\"db\",kind=\"idle\"} 0.000000007
observer_wait_duration_seconds_count{pid=\"42\",comm=\"db\",kind=\"idle\"} 2
# HELP observer_alerts_total Alerts raised, by process and kind.
# TYPE observer_alerts_total counter
observer_alerts_total{pid=\"7\",comm=\"api\",kind=\"go_panic\"} 1
observer_alerts_total{pid=\"42\",comm=\"db\",kind=\"deadlock\"} 1
observer_alerts_total{pid=\"42\",comm=\"db\",kind=\"lock_hold\"} 1
observer_alerts_total{pid=\"42\",comm=\"db\",kind=\"stall\"} 2
# HELP observer_lock_hold_episodes_total Holds of a lock that made threads wait past the threshold (one lock_hold alert each).
# TYPE observer_lock_hold_episodes_total counter
observer_lock_hold_episodes_total{pid=\"7\",comm=\"api\"} 0
observer_lock_hold_episodes_total{pid=\"42\",comm=\"db\"} 1
# HELP observer_lock_hold_waiters_total Waits past the threshold behind those holds.
# TYPE observer_lock_hold_waiters_total counter
observer_lock_hold_waiters_total{pid=\"7\",comm=\"api\"} 0
observer_lock_hold_waiters_total{pid=\"42\",comm=\"db\"} 3
# HELP observer_stalled_threads Threads blocked on a held lock past --stall-after, now.
# TYPE observer_stalled_threads gauge
observer_stalled_threads{pid=\"7\",comm=\"api\"} 0
observer_stalled_threads{pid=\"42\",comm=\"db\"} 2
# HELP observer_stalled_goroutines Goroutines waiting on a sync primitive past --stall-after, now.
# TYPE observer_stalled_goroutines gauge
observer_stalled_goroutines{pid=\"7\",comm=\"api\"} 0
observer_stalled_goroutines{pid=\"42\",comm=\"db\"} 0
# HELP observer_thread_deaths_total Threads that died while their process lived on.
# TYPE observer_thread_deaths_total counter
observer_thread_deaths_total{pid=\"7\",comm=\"api\"} 0
observer_thread_deaths_total{pid=\"42\",comm=\"db\"} 0
# HELP observer_go_panics_total Go panics, recovered or not.
# TYPE observer_go_panics_total counter
observer_go_panics_total{pid=\"7\",comm=\"api\"} 1
observer_go_panics_total{pid=\"42\",comm=\"db\"} 0
";
        assert!(
            text.ends_with(expected_tail),
            "per-process part differs:\n{text}"
        );
        let head = format!(
            "\
# HELP observer_up 1 while observer runs.
# TYPE observer_up gauge
observer_up 1
# HELP observer_build_info observer's version, as a label; the value is always 1.
# TYPE observer_build_info gauge
observer_build_info{{version=\"{}\"}} 1
# HELP observer_watched_processes Processes observer watches now.
# TYPE observer_watched_processes gauge
observer_watched_processes 3
# HELP observer_go_processes Watched processes with the goroutine probes attached.
# TYPE observer_go_processes gauge
observer_go_processes 1
",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.starts_with(&head), "head differs:\n{text}");
        assert_eq!(
            sample_lines(&text, "observer_events_dropped_total"),
            [
                "observer_events_dropped_total{what=\"events\"} 1",
                "observer_events_dropped_total{what=\"aggregates\"} 2",
                "observer_events_dropped_total{what=\"in_flight\"} 3",
                "observer_events_dropped_total{what=\"stacks_missing\"} 4",
            ]
        );
        let by_kind = sample_lines(&text, "observer_alerts_by_kind_total");
        assert_eq!(by_kind.len(), KINDS.len(), "{by_kind:?}");
        assert!(by_kind.contains(&"observer_alerts_by_kind_total{kind=\"stall\"} 2".into()));
        assert!(by_kind.contains(&"observer_alerts_by_kind_total{kind=\"lock_hold\"} 1".into()));
        assert!(by_kind.contains(&"observer_alerts_by_kind_total{kind=\"idle_wait\"} 0".into()));
    }

    /// Every line is a comment or `name{labels} value`, every family is declared once before
    /// its samples, and no sample appears twice: what Prometheus' parser insists on.
    #[test]
    fn exposition_is_well_formed() {
        let m = Metrics::with_limits(100, GONE_GRACE);
        for pid in 1..20 {
            m.wait(pid, "w\"eird\\comm\n", WaitKind::Goroutine, 1);
            m.alert(pid, "w\"eird\\comm\n", "thread_exit");
        }
        let text = m.render();
        assert!(text.ends_with('\n'));
        let mut declared = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        let mut histograms = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "declared twice: {line}");
                if rest.ends_with(" histogram") {
                    histograms.insert(name.to_string());
                }
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| histograms.contains(*f)))
                .unwrap_or(name);
            assert!(declared.contains(family), "sample before its TYPE: {line}");
            assert!(seen.insert(series.to_string()), "duplicate series: {line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain-name_1"), "plain-name_1");
        let m = Metrics::with_limits(10, GONE_GRACE);
        m.alert(1, "evil\"} 99\nfake_metric 1", "stall");
        let text = m.render();
        assert!(
            text.contains(
                "observer_alerts_total{pid=\"1\",comm=\"evil\\\"} 99\\nfake_metric 1\",kind=\"stall\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("fake_metric")));
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    /// Every reason is exported from 0 (so `increase()` sees the first period); a degraded
    /// alert about observer itself (pid 0) makes no per-process series.
    #[test]
    fn degraded_modes_are_counted_and_gauged() {
        use crate::detect::degraded::Reason;
        let m = Metrics::with_limits(10, GONE_GRACE);
        let text = m.render();
        assert_eq!(
            sample_lines(&text, "observer_degraded_total").len(),
            Reason::ALL.len()
        );
        assert!(text.contains("observer_degraded{reason=\"ring_buffer_full\"} 0\n"));
        m.degraded_started(Reason::RingBufferFull);
        m.set_degraded(&[(Reason::RingBufferFull, 1), (Reason::GoProbeBudget, 2)]);
        m.alert(0, "", "degraded");
        let text = m.render();
        assert!(text.contains("observer_degraded_total{reason=\"ring_buffer_full\"} 1\n"));
        assert!(text.contains("observer_degraded{reason=\"ring_buffer_full\"} 1\n"));
        assert!(text.contains("observer_degraded{reason=\"go_probe_budget\"} 2\n"));
        assert!(text.contains("observer_alerts_by_kind_total{kind=\"degraded\"} 1\n"));
        assert!(!text.contains("pid=\"0\""), "{text}");
    }

    /// Both sinks are exported from 0, whether or not they are configured.
    #[test]
    fn export_failures_are_counted_by_sink() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        let text = m.render();
        assert!(text.contains("observer_export_failures_total{sink=\"alertmanager\"} 0\n"));
        assert!(text.contains("observer_export_failures_total{sink=\"otlp\"} 0\n"));
        m.export_failures("alertmanager", 3);
        m.export_failures("alertmanager", 2);
        let text = m.render();
        assert!(text.contains("observer_export_failures_total{sink=\"alertmanager\"} 5\n"));
        assert!(text.contains("observer_export_failures_total{sink=\"otlp\"} 0\n"));
    }

    #[test]
    fn export_failures_start_at_zero_per_sink() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("observer_export_failures_total{sink=\"alertmanager\"} 0\n"));
        assert!(text.contains("observer_export_failures_total{sink=\"otlp\"} 0\n"));
        m.export_failures("otlp", 2);
        m.export_failures("otlp", 1);
        assert!(m
            .render()
            .contains("observer_export_failures_total{sink=\"otlp\"} 3\n"));
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_000_000_000), "1");
        assert_eq!(seconds(1_500_000_000), "1.5");
        assert_eq!(seconds(1), "0.000000001");
        // Above 2^53 ns an f64 would round; this must not.
        assert_eq!(seconds(u64::MAX), "18446744073.709551615");
    }

    fn value(line: &str) -> f64 {
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    /// _count and _sum equal the wait counters, per process and kind, with long waits and
    /// kernel-summed ones mixed; the buckets are cumulative and end at _count.
    #[test]
    fn histogram_agrees_with_the_wait_counters() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        m.wait(7, "db", WaitKind::Lock, 300_000_000);
        m.wait(7, "db", WaitKind::Lock, 300_000_000);
        let mut summed = AggValue {
            count: 10,
            total_ns: 9_000_000,
            ..Default::default()
        };
        summed.bins[0] = 9;
        summed.bins[agg_bin(5_000_000)] = 1;
        m.waits_summed(7, "db", WaitKind::Lock, &summed);
        m.waits_summed(7, "db", WaitKind::Idle, &summed);
        m.wait(8, "go", WaitKind::Goroutine, 90_000_000_000);
        let text = m.render();
        let name = "observer_wait_duration_seconds";
        for (pid, comm, kind) in [(7, "db", "lock"), (7, "db", "idle"), (8, "go", "goroutine")] {
            let l = format!("{{pid=\"{pid}\",comm=\"{comm}\",kind=\"{kind}\"");
            let one = |n: &str| {
                let lines = sample_lines(&text, n);
                let found: Vec<&String> = lines.iter().filter(|s| s.contains(&l)).collect();
                assert_eq!(found.len(), 1, "{n}{l}: {text}");
                value(found[0])
            };
            assert_eq!(one(&format!("{name}_count")), one("observer_waits_total"));
            assert_eq!(
                one(&format!("{name}_sum")),
                one("observer_wait_seconds_total")
            );
            let buckets: Vec<String> = sample_lines(&text, &format!("{name}_bucket"))
                .into_iter()
                .filter(|s| s.contains(&l))
                .collect();
            assert_eq!(buckets.len(), BOUNDS_NS.len() + 1);
            let values: Vec<f64> = buckets.iter().map(|s| value(s)).collect();
            assert!(values.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
            assert!(buckets[BOUNDS_NS.len()].contains("le=\"+Inf\""));
            assert_eq!(values[BOUNDS_NS.len()], one(&format!("{name}_count")));
        }
        let lock = |le: &str| {
            let lines = sample_lines(&text, &format!("{name}_bucket"));
            let want = format!("pid=\"7\",comm=\"db\",kind=\"lock\",le=\"{le}\"}}");
            value(lines.iter().find(|s| s.contains(&want)).unwrap())
        };
        assert_eq!(lock("0.001"), 9.0);
        assert_eq!(lock("0.005"), 10.0);
        assert_eq!(lock("0.25"), 10.0);
        assert_eq!(lock("0.5"), 12.0);
        assert!(text.contains(&format!(
            "{name}_bucket{{pid=\"8\",comm=\"go\",kind=\"goroutine\",le=\"60\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "{name}_bucket{{pid=\"8\",comm=\"go\",kind=\"goroutine\",le=\"+Inf\"}} 1\n"
        )));
    }
}
