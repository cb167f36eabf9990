//! Formatting figures and Markdown tables for the report.

use std::fmt::Write as _;
use std::time::Duration;

use super::ownstats::{steady_cpu_share, ObserverStats};
use super::stats::spread;

pub(super) fn table_header(s: &mut String, cols: &[String]) {
    table_row(s, cols);
    let _ = writeln!(s, "|{}", " --- |".repeat(cols.len()));
}

pub(super) fn table_row(s: &mut String, cols: &[String]) {
    let _ = writeln!(
        s,
        "| {} |",
        cols.iter()
            .map(|c| c.replace('|', "\\|"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

pub(super) fn fmt_spread(vals: &[f64], f: impl Fn(f64) -> String) -> String {
    match spread(vals) {
        Some(sp) if vals.len() > 1 => format!("{} ({}-{})", f(sp.median), f(sp.min), f(sp.max)),
        Some(sp) => f(sp.median),
        None => "n/a".into(),
    }
}

/// observer's CPU after it attached, as a share of one core over the same time.
pub(super) fn fmt_cpu_share(obs: &[&ObserverStats]) -> String {
    let shares: Vec<f64> = obs.iter().filter_map(|o| steady_cpu_share(o)).collect();
    if shares.is_empty() {
        return "-".into();
    }
    fmt_spread(&shares, |x| format!("{x:.1}%"))
}

pub(super) fn fmt_startup_cpu(obs: &[&ObserverStats]) -> String {
    let ms: Vec<f64> = obs
        .iter()
        .filter_map(|o| Some(o.attach?.cpu?.as_secs_f64() * 1e3))
        .collect();
    fmt_spread(&ms, |x| format!("{x:.0} ms"))
}

pub(super) fn fmt_rss(obs: &[&ObserverStats]) -> String {
    let kib: Vec<f64> = obs
        .iter()
        .filter_map(|o| o.max_rss_kib.map(|k| k as f64))
        .collect();
    match kib
        .iter()
        .copied()
        .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
    {
        Some(max) => format!("{:.0} MiB", max / 1024.0),
        None => "-".into(),
    }
}

pub(super) fn fmt_attach(obs: &[&ObserverStats]) -> String {
    let ms: Vec<f64> = obs
        .iter()
        .filter_map(|o| Some(o.attach?.at.as_secs_f64() * 1e3))
        .collect();
    fmt_spread(&ms, |x| format!("{x:.0} ms"))
}

pub(super) fn fmt_opt_ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "n/a".into())
}

pub(super) fn fmt_opt_kib(k: Option<u64>) -> String {
    k.map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

pub(super) fn fmt_opt_f(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "n/a".into())
}

pub(super) fn fmt_opt_si(v: Option<f64>) -> String {
    v.map(fmt_si).unwrap_or_else(|| "n/a".into())
}

/// Three significant digits with a k/M/G suffix: 2_810_000 -> "2.81M", 3925 -> "3.93k".
pub(super) fn fmt_si(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let decimals = match scaled.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 2,
    };
    if suffix.is_empty() && scaled.fract() == 0.0 {
        return format!("{scaled:.0}");
    }
    format!("{scaled:.decimals$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_format() {
        assert_eq!(fmt_si(2_810_000.0), "2.81M");
        assert_eq!(fmt_si(427_179.0), "427k");
        assert_eq!(fmt_si(3925.0), "3.92k");
        assert_eq!(fmt_si(12.0), "12");
        assert_eq!(fmt_si(0.5), "0.50");
        assert_eq!(
            fmt_spread(&[1.0, 2.0, 3.0], |x| format!("{x:.1}")),
            "2.0 (1.0-3.0)"
        );
        assert_eq!(fmt_spread(&[], |x| format!("{x}")), "n/a");
    }
}
