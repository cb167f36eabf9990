//! observer's own figures from one run: when it attached, its CPU and memory, and what its exit
//! summary says (waits observed, events lost).

use std::time::Duration;

use super::proc::{Attach, Ended};

/// What observer itself did during one run.
#[derive(Debug, Clone, Default)]
pub(super) struct ObserverStats {
    /// When it printed its "watching"/"running" line, i.e. probes loaded and attached.
    pub(super) attach: Option<Attach>,
    /// User + system CPU of the observer process itself (not of the command it ran).
    pub(super) cpu: Option<Duration>,
    pub(super) wall: Duration,
    pub(super) max_rss_kib: Option<u64>,
    pub(super) waits: Option<u64>,
    pub(super) drops: Option<Vec<(String, u64)>>,
}

pub(super) fn observer_stats(end: &Ended, attach: Option<Attach>) -> ObserverStats {
    ObserverStats {
        attach,
        cpu: end.cpu,
        wall: end.wall,
        max_rss_kib: end.max_rss_kib,
        waits: parse_waits_observed(&end.stderr).map(|(w, _)| w),
        drops: parse_drops(&end.stderr),
    }
}

/// observer's CPU after it attached, as a share of one core over the same time: the start-up
/// (BTF, verifier) is a one-off shown apart in section 6.
pub(super) fn steady_cpu_share(o: &ObserverStats) -> Option<f64> {
    let (cpu0, t0) = match o.attach {
        Some(Attach { at, cpu: Some(c) }) => (c, at),
        _ => (Duration::ZERO, Duration::ZERO),
    };
    let cpu = o.cpu?.checked_sub(cpu0)?;
    let wall = o.wall.checked_sub(t0)?;
    (wall > Duration::ZERO).then(|| cpu.as_secs_f64() / wall.as_secs_f64() * 100.0)
}

/// observer's summary line "drops: 0 events dropped (ring buffer full), 4 samples without a stack, ...",
/// as (what, count) pairs in order, without the parenthesised reasons.
pub(super) fn parse_drops(stderr: &str) -> Option<Vec<(String, u64)>> {
    let rest = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("drops:"))?;
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = match part.find('(') {
            Some(i) => &part[..i],
            None => part,
        };
        let mut words = part.split_whitespace();
        let Some(n) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
            continue;
        };
        let what = words.collect::<Vec<_>>().join(" ");
        if !what.is_empty() {
            out.push((what, n));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// observer's summary line "waits observed: 425, 12 over the threshold".
pub(super) fn parse_waits_observed(stderr: &str) -> Option<(u64, u64)> {
    let rest = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("waits observed:"))?;
    let (all, over) = rest.split_once(',')?;
    let over = over.split_whitespace().next()?;
    Some((all.trim().parse().ok()?, over.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_line() {
        let err = "observer summary for x (pid 1)\nwaits observed: 425, 12 over the threshold\n\
                   drops: 0 events dropped (ring buffer full), 3 aggregate updates lost (map full), \
                   0 waits untracked (in-flight table full), 4 samples without a stack, 0 undecodable events\n\
                     data was lost: ...\n";
        let d = parse_drops(err).expect("drops");
        assert_eq!(
            d,
            vec![
                ("events dropped".to_string(), 0),
                ("aggregate updates lost".to_string(), 3),
                ("waits untracked".to_string(), 0),
                ("samples without a stack".to_string(), 4),
                ("undecodable events".to_string(), 0),
            ]
        );
        assert_eq!(parse_waits_observed(err), Some((425, 12)));
        assert_eq!(parse_drops("no summary"), None);
        assert_eq!(parse_drops("drops: none"), None);
        assert_eq!(parse_waits_observed("waits observed: many"), None);
    }
}
