//! The sidecar case's load: many_threads processes started together, and their throughput over
//! a window read from their progress lines.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::proc::{command, Proc, Stream};

/// The load processes; killed and reaped when dropped, also on the error paths.
pub(super) struct Load(Vec<Proc>);

impl Load {
    pub(super) fn start(argv: &[String], procs: u32) -> Result<Load> {
        let mut load = Load(Vec::new());
        for _ in 0..procs {
            load.0.push(Proc::spawn(&mut command(argv))?);
        }
        for p in &load.0 {
            if p.wait_line(Stream::Out, "threads started", Duration::from_secs(60))
                .is_none()
            {
                bail!("a many_threads process did not start its threads");
            }
        }
        Ok(load)
    }

    /// Operations per second of the whole load between `from` and `to`.
    pub(super) fn ops_per_sec(&self, from: Instant, to: Instant) -> Result<f64> {
        let mut total = 0.0;
        for p in &self.0 {
            let ticks: Vec<(Instant, Tick)> = p
                .lines(Stream::Out)
                .into_iter()
                .filter_map(|(at, line)| Some((at, parse_tick(&line)?)))
                .collect();
            let Some(rate) = window_rate(&ticks, from, to) else {
                bail!("pid {}: fewer than two progress lines in the window", p.pid);
            };
            total += rate;
        }
        Ok(total)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // Joining thousands of threads would only make the bench longer.
        for p in &self.0 {
            p.signal(libc::SIGKILL);
        }
        for p in self.0.drain(..) {
            p.finish(Duration::from_secs(30), |_| {});
        }
    }
}

/// bench/many_threads.c's progress line "many_threads: tick secs=1.004 ops=1023".
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tick {
    secs: f64,
    ops: u64,
}

fn parse_tick(line: &str) -> Option<Tick> {
    let rest = line.trim().strip_prefix("many_threads: tick ")?;
    let mut secs = None;
    let mut ops = None;
    for word in rest.split_whitespace() {
        match word.split_once('=') {
            Some(("secs", v)) => secs = v.parse::<f64>().ok(),
            Some(("ops", v)) => ops = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    Some(Tick {
        secs: secs?,
        ops: ops?,
    })
}

/// Throughput between the first progress line that arrived at or after `from` and the last that
/// arrived at or before `to`, by the load's own clock (the pipe's delay does not matter).
fn window_rate(ticks: &[(Instant, Tick)], from: Instant, to: Instant) -> Option<f64> {
    let inside: Vec<&Tick> = ticks
        .iter()
        .filter(|(at, _)| *at >= from && *at <= to)
        .map(|(_, t)| t)
        .collect();
    let (first, last) = (inside.first()?, inside.last()?);
    let secs = last.secs - first.secs;
    let ops = last.ops.checked_sub(first.ops)?;
    (secs > 0.0).then(|| ops as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(
            parse_tick("many_threads: tick secs=1.004 ops=1023"),
            Some(Tick {
                secs: 1.004,
                ops: 1023
            })
        );
        assert_eq!(parse_tick("many_threads: tick secs=1.0"), None);
        assert_eq!(parse_tick("many_threads: threads=2 secs=1 ops=5"), None);
        assert_eq!(parse_tick("many_threads: tick secs=x ops=1"), None);
    }

    #[test]
    fn rate_over_the_window_only() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let tick = |secs: f64, ops: u64| Tick { secs, ops };
        let ticks = vec![
            (at(0), tick(0.5, 100)),
            (at(500), tick(1.0, 1000)),
            (at(1000), tick(1.5, 1500)),
            (at(1500), tick(2.0, 2000)),
            (at(2000), tick(2.5, 9000)),
        ];
        // Window [400 ms, 1600 ms]: ticks at 500, 1000, 1500 -> 1000 ops in 1 s.
        assert_eq!(window_rate(&ticks, at(400), at(1600)), Some(1000.0));
        // One tick in the window is no rate.
        assert_eq!(window_rate(&ticks, at(900), at(1100)), None);
        assert_eq!(window_rate(&[], at(0), at(10)), None);
        // A counter that went backwards (another process's line) is no rate either.
        let bad = vec![(at(0), tick(1.0, 10)), (at(10), tick(2.0, 5))];
        assert_eq!(window_rate(&bad, at(0), at(10)), None);
    }
}
