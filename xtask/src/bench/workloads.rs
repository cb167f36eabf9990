//! The timed workloads, the variants each one is run as, and how its figures are read from its
//! output.

use super::tools::{perf_argv, Tools};
use super::Plan;

/// Goals as ratios of the bare figure: unrelated syscalls (project brief), futex-heavy and
/// contended-lock targets of every kind (issue 11: the lock-kind walk must keep them at 0.95).
const GOAL_SYSCALL: f64 = 0.98;
const GOAL_FUTEX: f64 = 0.95;
/// Issue 13: a park-heavy Go program under the default --go-probe-budget.
const GOAL_GO_PARKS: f64 = 0.90;
/// Issue 13: a busy Go service under the default --go-probe-budget.
const GOAL_GO_SERVICE: f64 = 0.95;
const GOAL_LOCK_KINDS: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Variant {
    Bare,
    /// `observer watch --pid` on an idle process while the workload runs bare: the tax on
    /// everything else on the host.
    ObserverWatchIdle,
    ObserverRun,
    ObserverRunNoGo,
    /// A background bpftrace with empty programs on the futex syscall tracepoints.
    BpftraceNoop,
    /// `bpftrace futexctn.bt -c CMD`.
    BpftraceFutexctn,
    /// `bpftrace -e 'uprobe:CMD:probed {}' -c CMD`: the price of one uprobe hit.
    BpftraceUprobe,
}

impl Variant {
    pub(super) fn label(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::ObserverWatchIdle => "observer watch (idle pid)",
            Variant::ObserverRun => "observer run",
            Variant::ObserverRunNoGo => "observer run --no-go",
            Variant::BpftraceNoop => "bpftrace, empty futex tracepoints",
            Variant::BpftraceFutexctn => "bpftrace futexctn-like",
            Variant::BpftraceUprobe => "bpftrace, empty uprobe on probed()",
        }
    }

    pub(super) fn is_observer(self) -> bool {
        matches!(
            self,
            Variant::ObserverWatchIdle | Variant::ObserverRun | Variant::ObserverRunNoGo
        )
    }

    pub(super) fn needs_bpftrace(self) -> bool {
        matches!(
            self,
            Variant::BpftraceNoop | Variant::BpftraceFutexctn | Variant::BpftraceUprobe
        )
    }
}

pub(super) struct Metric {
    pub(super) label: &'static str,
    pub(super) parse: fn(&str) -> Option<f64>,
    pub(super) compare: Compare,
}

/// How a variant's figure is set against the bare one of the same round.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Compare {
    /// Throughput: variant / bare is the cost.
    Ratio,
    /// Time per operation: variant - bare is the price of what the variant adds.
    Difference,
    /// Context only.
    Shown,
}

pub(super) struct Workload {
    pub(super) section: &'static str,
    pub(super) title: &'static str,
    pub(super) argv: Vec<String>,
    pub(super) metrics: Vec<Metric>,
    pub(super) variants: Vec<Variant>,
    pub(super) goal: Option<f64>,
    pub(super) about: &'static str,
    /// Tries per variant and round; the round keeps the best (see run::best_try).
    pub(super) best_of: usize,
}

pub(super) fn workloads(plan: &Plan, tools: &Tools, notes: &mut Vec<String>) -> Vec<Workload> {
    let secs = plan.secs.to_string();
    // The goal rows: short runs, best of a few per round (their noise is larger than the goals'
    // margins otherwise; see BENCHMARKS.md).
    let short = plan.short_secs.to_string();
    let mut list = Vec::new();
    if tools.perf {
        list.push(Workload {
            section: "1",
            title: "Tax on unrelated syscalls: perf bench syscall basic (getppid)",
            argv: perf_argv(&[
                "bench",
                "syscall",
                "basic",
                "-l",
                &plan.syscall_loops.to_string(),
            ]),
            best_of: plan.best_of,
            metrics: vec![Metric {
                label: "getppid calls/s",
                parse: metric_syscall_ops,
                compare: Compare::Ratio,
            }],
            variants: vec![
                Variant::Bare,
                Variant::ObserverWatchIdle,
                Variant::BpftraceNoop,
            ],
            goal: Some(GOAL_SYSCALL),
            about:
                "getppid in a loop while observer watches an idle `sleep` (or while bpftrace sits \
                    on the futex syscall tracepoints): what every other process on the host pays.",
        });
        list.push(perf_futex_workload(
            plan,
            "2a",
            "Futex-heavy, never blocks: perf bench futex hash -t 2",
            "hash",
            "futex ops/s per thread",
            "FUTEX_WAIT calls whose value never matches: every call returns EAGAIN at once and \
                no thread ever sleeps.",
        ));
        list.push(perf_futex_workload(
            plan,
            "2b",
            "Futex waits that block: perf bench futex lock-pi -t 2",
            "lock-pi",
            "lock/unlock pairs/s per thread",
            "Two threads lock and unlock one priority-inheritance futex: the kernel hands the \
                lock over, so each contended lock really sleeps (sched_switch) and is woken \
                (sched_waking).",
        ));
    }
    list.push(Workload {
        section: "3",
        title: "Contended pthread mutex: bench/mutex_contend.c, 4 threads",
        argv: vec![
            tools.mutex_contend.display().to_string(),
            "4".into(),
            short,
            "1024".into(),
            "32".into(),
        ],
        best_of: plan.best_of,
        metrics: vec![
            Metric {
                label: "lock/unlock ops/s",
                parse: metric_mutex_ops,
                compare: Compare::Ratio,
            },
            Metric {
                label: "blocking waits/s",
                parse: metric_mutex_blocks,
                compare: Compare::Shown,
            },
        ],
        variants: vec![
            Variant::Bare,
            Variant::ObserverRun,
            Variant::BpftraceFutexctn,
        ],
        goal: Some(GOAL_FUTEX),
        about: "4 threads on 2 cores take one glibc mutex with a ~1 us critical section. \
                \"blocking waits/s\" (voluntary context switches) shows how often a thread really \
                slept; it is context, not a cost, and it swings between runs because glibc mutexes \
                let a running thread barge in ahead of a woken one.",
    });
    match &tools.rust_mutex_contend {
        Some(bin) => list.push(contended_lock_workload(
            plan,
            "3b",
            "Contended Rust std::sync::Mutex: bench/rust_mutex_contend.rs, 4 threads",
            bin.display().to_string(),
            vec![],
            [metric_rust_mutex_ops, metric_rust_mutex_blocks],
            "The Rust twin of section 3 (rustc -O, same work inside and outside the lock): std's \
                futex mutex spins briefly, then parks in FUTEX_WAIT on the lock word through \
                glibc's syscall(); no owner is recorded, so observer tells the wait from an idle \
                one by where it comes from.",
        )),
        None => {
            notes.push("section 3b (Rust Mutex) skipped: rust_mutex_contend did not build".into())
        }
    }
    list.push(contended_lock_workload(
        plan,
        "3c",
        "Contended pthread rwlock: bench/rwlock_contend.c, 4 threads, 1 write in 4",
        tools.rwlock_contend.display().to_string(),
        vec!["4".into()],
        [metric_rwlock_ops, metric_rwlock_blocks],
        "4 threads on 2 cores take one pthread_rwlock_t, for writing every 4th time and for \
            reading otherwise, with the section 3 critical section: readers park behind writers on \
            the lock's __wrphase_futex, writers on __writers_futex.",
    ));
    match &tools.goparks {
        Some(bin) => list.push(Workload {
            section: "4",
            title: "Go parks and readies: bench/goparks (4 channel ping-pong pairs, 4 sync.Mutex lockers)",
            argv: vec![bin.display().to_string(), "-seconds".into(), secs.clone()],
            best_of: 1,
            metrics: vec![
                Metric { label: "channel round trips/s", parse: metric_go_pingpong, compare: Compare::Ratio },
                Metric { label: "sync.Mutex ops/s", parse: metric_go_mutex, compare: Compare::Ratio },
            ],
            variants: vec![Variant::Bare, Variant::ObserverRun, Variant::ObserverRunNoGo],
            goal: Some(GOAL_GO_PARKS),
            about: "Every channel hop parks one goroutine (runtime.gopark) and readies it \
                    (runtime.ready) without a syscall; `--no-go` leaves out the goroutine uprobes, \
                    so the difference between the two observer rows is the uprobe cost. With the \
                    default --go-probe-budget (0.5% of a core) the park probes are duty-cycled: on \
                    about half a percent of the time, goroutines followed from memory snapshots meanwhile.",
        }),
        None => notes.push("section 4 (Go) skipped: goparks did not build".into()),
    }
    match &tools.busyhttp {
        Some(bin) => list.push(Workload {
            section: "4c",
            title: "A busy Go HTTP service: tests/goprogs/patterns/busyhttp.go (32 keep-alive clients)",
            argv: vec![bin.display().to_string(), "bench".into(), "-seconds".into(), secs.clone()],
            best_of: 1,
            metrics: vec![Metric {
                label: "requests/s",
                parse: metric_http_requests,
                compare: Compare::Ratio,
            }],
            variants: vec![Variant::Bare, Variant::ObserverRun, Variant::ObserverRunNoGo],
            goal: Some(GOAL_GO_SERVICE),
            about: "A net/http server and a separate load-generator process (its child, observed \
                    too under `observer run`) on loopback: each request parks and readies several \
                    goroutines (network poller, keep-alive reads). The default --go-probe-budget \
                    duty-cycles the per-park probes of both.",
        }),
        None => notes.push("section 4c (Go HTTP) skipped: busyhttp did not build".into()),
    }
    list.push(Workload {
        section: "4b",
        title: "Price of one uprobe hit on this machine: bench/uprobe_loop.c",
        argv: vec![
            tools.uprobe_loop.display().to_string(),
            plan.uprobe_calls.to_string(),
        ],
        best_of: 1,
        metrics: vec![Metric {
            label: "ns per call",
            parse: metric_uprobe_ns,
            compare: Compare::Difference,
        }],
        variants: vec![Variant::Bare, Variant::BpftraceUprobe],
        goal: None,
        about:
            "A loop calling one tiny function, bare and with an empty bpftrace uprobe on it: the \
                difference is what every uprobe hit costs here, before any program work. Each \
                goroutine park and ready pays it once in section 4.",
    });
    list
}

/// A contended-lock program with mutex_contend.c's interface (`THREADS SECONDS INSIDE OUTSIDE
/// [extra...]`, one result line with `ops_per_sec=` and `blocks_per_sec=`), bare and under
/// observer; `parse` reads those two figures.
fn contended_lock_workload(
    plan: &Plan,
    section: &'static str,
    title: &'static str,
    binary: String,
    extra: Vec<String>,
    parse: [fn(&str) -> Option<f64>; 2],
    about: &'static str,
) -> Workload {
    let mut argv = vec![
        binary,
        "4".into(),
        plan.short_secs.to_string(),
        "1024".into(),
        "32".into(),
    ];
    argv.extend(extra);
    Workload {
        section,
        title,
        argv,
        best_of: plan.best_of,
        metrics: vec![
            Metric {
                label: "lock/unlock ops/s",
                parse: parse[0],
                compare: Compare::Ratio,
            },
            Metric {
                label: "blocking waits/s",
                parse: parse[1],
                compare: Compare::Shown,
            },
        ],
        variants: vec![Variant::Bare, Variant::ObserverRun],
        goal: Some(GOAL_LOCK_KINDS),
        about,
    }
}

/// `perf bench futex OP -t 2` for one short try, under observer and both bpftrace peers.
fn perf_futex_workload(
    plan: &Plan,
    section: &'static str,
    title: &'static str,
    op: &str,
    label: &'static str,
    about: &'static str,
) -> Workload {
    Workload {
        section,
        title,
        argv: perf_argv(&[
            "bench",
            "futex",
            op,
            "-t",
            "2",
            "-r",
            &plan.short_secs.to_string(),
        ]),
        best_of: plan.best_of,
        metrics: vec![Metric {
            label,
            parse: metric_futex_avg,
            compare: Compare::Ratio,
        }],
        variants: vec![
            Variant::Bare,
            Variant::ObserverRun,
            Variant::BpftraceFutexctn,
            Variant::BpftraceNoop,
        ],
        goal: Some(GOAL_FUTEX),
        about,
    }
}

fn metric_syscall_ops(out: &str) -> Option<f64> {
    parse_syscall_basic(out).map(|r| r.ops_per_sec)
}
fn metric_futex_avg(out: &str) -> Option<f64> {
    parse_futex_averaged(out)
}
fn metric_mutex_ops(out: &str) -> Option<f64> {
    parse_kv(out, "mutex_contend:", "ops_per_sec")
}
fn metric_mutex_blocks(out: &str) -> Option<f64> {
    parse_kv(out, "mutex_contend:", "blocks_per_sec")
}
fn metric_rust_mutex_ops(out: &str) -> Option<f64> {
    parse_kv(out, "rust_mutex_contend:", "ops_per_sec")
}
fn metric_rust_mutex_blocks(out: &str) -> Option<f64> {
    parse_kv(out, "rust_mutex_contend:", "blocks_per_sec")
}
fn metric_rwlock_ops(out: &str) -> Option<f64> {
    parse_kv(out, "rwlock_contend:", "ops_per_sec")
}
fn metric_rwlock_blocks(out: &str) -> Option<f64> {
    parse_kv(out, "rwlock_contend:", "blocks_per_sec")
}
fn metric_go_pingpong(out: &str) -> Option<f64> {
    parse_kv(out, "goparks:", "pingpong_per_sec")
}
fn metric_go_mutex(out: &str) -> Option<f64> {
    parse_kv(out, "goparks:", "mutex_per_sec")
}
fn metric_http_requests(out: &str) -> Option<f64> {
    parse_kv(out, "busyhttp:", "requests_per_sec")
}
fn metric_uprobe_ns(out: &str) -> Option<f64> {
    parse_kv(out, "uprobe_loop:", "ns_per_call")
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct SyscallBasic {
    usecs_per_op: f64,
    ops_per_sec: f64,
}

/// `perf bench syscall basic`: "       0.185227 usecs/op" and "        5398823 ops/sec".
fn parse_syscall_basic(out: &str) -> Option<SyscallBasic> {
    let value_before = |unit: &str| {
        out.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            let v = words.next()?.parse::<f64>().ok()?;
            (words.next()? == unit).then_some(v)
        })
    };
    Some(SyscallBasic {
        usecs_per_op: value_before("usecs/op")?,
        ops_per_sec: value_before("ops/sec")?,
    })
}

/// `perf bench futex hash|lock-pi|...`: "Averaged 3011584 operations/sec (+- 0.50%), total secs = 10".
fn parse_futex_averaged(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Averaged")?;
        let mut words = rest.split_whitespace();
        let v = words.next()?.parse::<f64>().ok()?;
        words.next()?.starts_with("operations/sec").then_some(v)
    })
}

/// `key=value` from the first line starting with `prefix`, e.g. the bench programs' result line.
pub(super) fn parse_kv(out: &str, prefix: &str, key: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.trim_start().starts_with(prefix))?;
    line.split_whitespace().find_map(|w| {
        let (k, v) = w.split_once('=')?;
        (k == key).then(|| v.parse::<f64>().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_basic_output() {
        let out = "# Running 'syscall/basic' benchmark:\n# Executed 10000000 getppid() calls\n     Total time: 1.852 [sec]\n\n       0.185227 usecs/op\n        5398823 ops/sec\n";
        assert_eq!(
            parse_syscall_basic(out),
            Some(SyscallBasic {
                usecs_per_op: 0.185227,
                ops_per_sec: 5398823.0
            })
        );
        assert_eq!(parse_syscall_basic("garbage\n1.0 usecs/op\n"), None);
        assert_eq!(parse_syscall_basic(""), None);
    }

    #[test]
    fn futex_averaged_output() {
        let hash = "# Running 'futex/hash' benchmark:\nRun summary [PID 4518]: 2 threads, each operating on 1024 [private] futexes for 1 secs.\n\n[thread  0] futexes: 0x561ebed583c0 ... 0x561ebed593bc [ 1100800 ops/sec ]\n[thread  1] futexes: 0x561ebed59660 ... 0x561ebed5a65c [ 693248 ops/sec ]\n\nAveraged 897024 operations/sec (+- 22.72%), total secs = 1\n";
        assert_eq!(parse_futex_averaged(hash), Some(897024.0));
        let pi = "[thread   1] futex: 0x56401338cf58 [ 3921 ops/sec ]\n\nAveraged 3925 operations/sec (+- 0.10%), total secs = 1\n";
        assert_eq!(parse_futex_averaged(pi), Some(3925.0));
        assert_eq!(parse_futex_averaged("Averaged lots operations/sec"), None);
        assert_eq!(parse_futex_averaged("[thread 0] [ 5 ops/sec ]"), None);
    }

    #[test]
    fn key_value_lines() {
        let out = "Attaching 3 probes...\nmutex_contend: threads=4 secs=1.002 ops=464671 ops_per_sec=463869 blocks_per_sec=13799\n@x: 1\n";
        assert_eq!(
            parse_kv(out, "mutex_contend:", "ops_per_sec"),
            Some(463869.0)
        );
        assert_eq!(
            parse_kv(out, "mutex_contend:", "blocks_per_sec"),
            Some(13799.0)
        );
        assert_eq!(parse_kv(out, "mutex_contend:", "ops"), Some(464671.0));
        assert_eq!(parse_kv(out, "mutex_contend:", "missing"), None);
        let rust = "rust_mutex_contend: threads=4 secs=1.011 ops=395517 ops_per_sec=391215 blocks_per_sec=3471\n";
        assert_eq!(metric_rust_mutex_ops(rust), Some(391215.0));
        assert_eq!(metric_rust_mutex_blocks(rust), Some(3471.0));
        // Prefixes do not overlap: the C mutex row never reads the Rust line.
        assert_eq!(metric_mutex_ops(rust), None);
        let rw = "rwlock_contend: threads=4 secs=1.007 ops=331640 ops_per_sec=329267 blocks_per_sec=1141\n";
        assert_eq!(metric_rwlock_ops(rw), Some(329267.0));
        assert_eq!(metric_rwlock_blocks(rw), Some(1141.0));
        assert_eq!(parse_kv(out, "goparks:", "ops"), None);
        assert_eq!(
            parse_kv("goparks: ops_per_sec=x", "goparks:", "ops_per_sec"),
            None
        );
    }
}
