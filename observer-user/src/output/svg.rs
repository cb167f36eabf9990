//! Interactive SVG flame graphs of blocked time, drawn by inferno from the folded stacks.
//!
//! Widths are blocked nanoseconds (`count_name` "ns"); each frame's tooltip also gives the time
//! in a readable unit, e.g. `worker_update (lock_hold.c:45) (1,250,000 ns = 1.25ms, 42.00%)`.

use std::io;
use std::path::{Path, PathBuf};

use inferno::flamegraph::{self, Options};

use crate::output::profile::BlockedProfile;
use crate::util::duration::human;

#[derive(Debug, thiserror::Error)]
pub enum SvgError {
    #[error("cannot draw the flame graph: {0}")]
    Render(io::Error),
    #[error("cannot write flame graph to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Draws `profile` as a flame graph titled `title` into the file `path`.
pub fn write_svg(profile: &BlockedProfile, title: &str, path: &Path) -> Result<(), SvgError> {
    use std::io::Write as _;
    // inferno draws in one call (about 0.3 s for 10,000 stacks): the progress shows a spinner.
    let progress = crate::util::progress::Progress::start(
        &format!(
            "drawing the flame graph {} ({} stacks)",
            path.display(),
            profile.len()
        ),
        None,
    );
    let svg = render(profile, title)?;
    let written = crate::output::output_file::create(path)
        .and_then(|mut f| f.write_all(svg.as_bytes()))
        .map_err(|source| SvgError::Write {
            path: path.to_path_buf(),
            source,
        });
    progress.finish();
    written
}

/// The SVG document for `profile`.
pub fn render(profile: &BlockedProfile, title: &str) -> Result<String, SvgError> {
    let entries = profile.entries();
    let (blocked_ns, waits) = profile.totals(false);
    let (idle_ns, idle_waits) = profile.totals(true);
    let total = profile.total_weight_ns();
    let idle = if idle_waits > 0 || idle_ns > 0 {
        format!(
            ", {} idle in {idle_waits} waits (under [idle])",
            human(std::time::Duration::from_nanos(idle_ns))
        )
    } else {
        String::new()
    };

    let mut opt = Options::default();
    opt.title = title.to_string();
    opt.subtitle = Some(format!(
        "{} blocked in {waits} waits{idle}, {} distinct stacks",
        human(std::time::Duration::from_nanos(blocked_ns)),
        entries.len()
    ));
    opt.count_name = "ns".to_string();
    // Same function, same color, in every graph: makes two runs comparable by eye.
    opt.hash = true;

    if total == 0 {
        // inferno draws an error message for zero samples; nothing blocked is a valid result.
        return Ok(empty_svg(title));
    }
    let lines: Vec<String> = profile.lines();
    let mut out = Vec::new();
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut out)
        .map_err(SvgError::Render)?;
    let svg = String::from_utf8(out)
        .map_err(|e| SvgError::Render(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    Ok(add_readable_times(&svg))
}

fn empty_svg(title: &str) -> String {
    format!(
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="80" xmlns="http://www.w3.org/2000/svg">
<text x="600" y="24" text-anchor="middle" font-family="monospace" font-size="17">{}</text>
<text x="600" y="56" text-anchor="middle" font-family="monospace" font-size="12">no blocked time observed</text>
</svg>
"#,
        escape_xml(title)
    )
}

fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Rewrites each tooltip `name (1,234,567 ns, 12.00%)` to `name (1,234,567 ns = 1.23ms, 12.00%)`.
fn add_readable_times(svg: &str) -> String {
    const OPEN: &str = "<title>";
    const CLOSE: &str = "</title>";
    let mut out = String::with_capacity(svg.len() + svg.len() / 16);
    let mut rest = svg;
    while let Some(start) = rest.find(OPEN) {
        let body_start = start + OPEN.len();
        let Some(len) = rest[body_start..].find(CLOSE) else {
            break;
        };
        out.push_str(&rest[..body_start]);
        out.push_str(&with_readable_time(&rest[body_start..body_start + len]));
        rest = &rest[body_start + len..];
    }
    out.push_str(rest);
    out
}

fn with_readable_time(tooltip: &str) -> String {
    // The counts are inside the last parentheses, as flamegraph.js also assumes.
    let Some(open) = tooltip.rfind('(') else {
        return tooltip.to_string();
    };
    let counts = &tooltip[open + 1..];
    let Some(number_end) = counts.find(" ns,") else {
        return tooltip.to_string();
    };
    let number = &counts[..number_end];
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == ',') {
        return tooltip.to_string();
    }
    let Ok(ns) = number.replace(',', "").parse::<u64>() else {
        return tooltip.to_string();
    };
    if ns < 1000 {
        return tooltip.to_string();
    }
    let split = open + 1 + number_end + " ns".len();
    format!(
        "{} = {}{}",
        &tooltip[..split],
        human(std::time::Duration::from_nanos(ns)),
        &tooltip[split..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    /// Idle time is a tower of its own under `[idle]`, and the subtitle says how much.
    #[test]
    fn idle_time_is_its_own_tower() {
        use crate::output::profile::Category;
        use crate::stacks::frame::from_names;
        let mut p = profile();
        let idle = from_names(&frames(&["[select]", "main.serve (main.go:9)"]));
        p.add_many_frames(Category::Idle, "bank", "goroutines", &idle, 60_000_000, 30);
        let svg = render(&p, "t").unwrap();
        assert!(
            svg.contains(
                "3ms blocked in 3 waits, 60ms idle in 30 waits (under [idle]), 4 distinct stacks"
            ),
            "subtitle"
        );
        assert!(
            svg.contains("<title>[idle] (60,000,000 ns = 60ms, "),
            "idle tower"
        );
        assert!(svg.contains("<title>main.serve (main.go:9) (60,000,000 ns"));
    }

    fn profile() -> BlockedProfile {
        let mut p = BlockedProfile::new();
        p.add(
            "bank",
            "worker-1",
            &frames(&["__lll_lock_wait", "worker_update (lock_hold.c:45)", "main"]),
            1_250_000,
        );
        p.add(
            "bank",
            "worker-2",
            &frames(&["[chan receive]", "main.lockedSection (/tmp/x/main.go:23)"]),
            1_750_000,
        );
        p.add("bank", "worker 3", &[], 500);
        p
    }

    #[test]
    fn writes_titled_svg_with_frames_and_readable_tooltips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocked.svg");
        write_svg(&profile(), "Blocked time: bank <pid 42>", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();

        assert!(
            svg.starts_with("<?xml") || svg.starts_with("<svg"),
            "{}",
            &svg[..80]
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Blocked time: bank &lt;pid 42&gt;"));
        assert!(
            svg.contains("3ms blocked in 3 waits, 3 distinct stacks"),
            "subtitle"
        );
        for name in [
            "worker_update (lock_hold.c:45)",
            "main.lockedSection (/tmp/x/main.go:23)",
            "[chan receive]",
            "__lll_lock_wait",
            "worker-1",
        ] {
            assert!(svg.contains(name), "missing {name}");
        }
        assert!(
            svg.contains("<title>worker_update (lock_hold.c:45) (1,250,000 ns = 1.25ms, "),
            "tooltip"
        );
        assert!(svg.contains("<title>all (3,000,500 ns = 3ms, 100%)</title>"));
        // Small counts stay as they are.
        assert!(svg.contains("(500 ns, "));
        // The thread `worker 3` stays one frame instead of turning into a differential count.
        assert!(svg.contains("worker\u{a0}3 (500 ns, "));
        assert_eq!(
            svg.matches("<title>").count(),
            svg.matches("</title>").count()
        );
    }

    #[test]
    fn same_profile_same_bytes() {
        let a = render(&profile(), "t").unwrap();
        let b = render(&profile(), "t").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn empty_profile_still_draws() {
        let svg = render(&BlockedProfile::new(), "nothing <here>").unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("nothing &lt;here&gt;"));
        assert!(svg.contains("no blocked time observed"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn write_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("missing-dir").join("x.svg");
        let e = write_svg(&profile(), "t", &bad).unwrap_err();
        assert!(e.to_string().contains("missing-dir"), "{e}");
    }

    #[test]
    fn tooltip_rewrite_leaves_other_text_alone() {
        assert_eq!(
            with_readable_time("f (x) (2,000,000,000 ns, 50.00%)"),
            "f (x) (2,000,000,000 ns = 2s, 50.00%)"
        );
        assert_eq!(with_readable_time("f (12 ns, 1.00%)"), "f (12 ns, 1.00%)");
        assert_eq!(with_readable_time("no counts"), "no counts");
        assert_eq!(with_readable_time("g (a ns, 1%)"), "g (a ns, 1%)");
    }

    #[test]
    fn protects_trailing_numbers_only_in_the_last_frame() {}
}
