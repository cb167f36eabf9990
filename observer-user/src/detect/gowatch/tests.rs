//! The goroutine rules fed with a fake kernel: stalls, leaks, waits, sampling.

use super::*;

fn agg(count: u64, total_ns: u64) -> AggValue {
    AggValue {
        count,
        total_ns,
        ..Default::default()
    }
}

/// The kernel's goroutine tables, as a test lays them out.
#[derive(Default)]
struct FakeKernel {
    parked: Vec<(u64, GoParked)>,
    stacks: HashMap<i32, Vec<u64>>,
    /// Sampling periods set, in order; `refuse` makes the kernel turn them down.
    periods: Vec<u32>,
    refuse: bool,
}

impl KernelStacks for FakeKernel {
    fn stack(&self, stack_id: i32) -> Option<Vec<u64>> {
        self.stacks.get(&stack_id).cloned()
    }
}

impl GoroutineProbes for FakeKernel {
    fn go_parked(&self, _pid: u32) -> Option<Vec<(u64, GoParked)>> {
        Some(self.parked.clone())
    }
    fn set_go_sample_period(&mut self, _pid: u32, period: u32) -> bool {
        self.periods.push(period);
        !self.refuse
    }
}

/// The profile as a list of (frame names, ns, count).
type Profile = Vec<(Vec<String>, u64, u64)>;

impl GoProfile for Profile {
    fn add(&mut self, frames: &[Frame], ns: u64, count: u64, _: ReasonClass, _: &GoLabels) {
        self.push((crate::stacks::frame::names(frames), ns, count));
    }
}

/// No such process: stacks stay unnamed, and no binary means parked stacks are empty.
const PID: u32 = u32::MAX;
const REASONS: [&str; 5] = ["", "sync.Mutex.Lock", "chan receive", "sleep", "select"];
const STALL: u64 = 3_000_000_000;

fn watch(leak_window_ns: u64) -> GoWatch {
    GoWatch::new(
        PID,
        REASONS.iter().map(|r| r.to_string()).collect(),
        leak_window_ns,
    )
}

fn parked(reason: u32, start_ns: u64, gopc: u64) -> GoParked {
    GoParked {
        start_ns,
        gopc,
        g: 0,
        reason,
        _pad: 0,
        lock: 0,
    }
}

fn stalls(alerts: &[GoAlert]) -> Vec<(u64, String, u64)> {
    alerts
        .iter()
        .filter_map(|a| match &a.finding {
            GoFinding::Stall {
                goid,
                wait_reason,
                blocked_ns,
                ..
            } => Some((*goid, wait_reason.clone(), *blocked_ns)),
            _ => None,
        })
        .collect()
}

#[test]
fn goroutine_on_a_mutex_stalls_once_per_episode() {
    let mut go = watch(u64::MAX);
    let mut stacks = StackResolver::new();
    let mut kernel = FakeKernel {
        parked: vec![(7, parked(1, 1_000, 0))],
        ..FakeKernel::default()
    };
    // Under the threshold: nothing yet.
    assert!(go
        .scan(1_000 + STALL - 1, STALL, &kernel, &mut stacks)
        .is_empty());
    let first = go.scan(1_000 + STALL, STALL, &kernel, &mut stacks);
    assert_eq!(stalls(&first), vec![(7, "sync.Mutex.Lock".into(), STALL)]);
    assert_eq!((first[0].tid, first[0].time_ns), (0, None));
    assert_eq!(go.stalled_count(), 1);
    // Still parked in the same wait: not reported again.
    assert!(go
        .scan(1_000 + 2 * STALL, STALL, &kernel, &mut stacks)
        .is_empty());
    assert_eq!(go.stalled_count(), 1);
    // It woke, then parked again: a new episode, reported again.
    kernel.parked.clear();
    assert!(go
        .scan(1_000 + 3 * STALL, STALL, &kernel, &mut stacks)
        .is_empty());
    assert_eq!(go.stalled_count(), 0);
    kernel.parked = vec![(7, parked(1, 5 * STALL, 0))];
    let again = go.scan(6 * STALL, STALL, &kernel, &mut stacks);
    assert_eq!(stalls(&again), vec![(7, "sync.Mutex.Lock".into(), STALL)]);
}

#[test]
fn only_sync_wait_reasons_stall() {
    let mut go = watch(u64::MAX);
    let mut stacks = StackResolver::new();
    // Channel, sleep, select and an unknown reason number, parked for ages.
    let kernel = FakeKernel {
        parked: vec![
            (1, parked(2, 0, 0)),
            (2, parked(3, 0, 0)),
            (3, parked(4, 0, 0)),
            (4, parked(99, 0, 0)),
        ],
        ..FakeKernel::default()
    };
    assert!(go.scan(100 * STALL, STALL, &kernel, &mut stacks).is_empty());
    assert_eq!(go.stalled_count(), 0);
    assert_eq!(go.reason(99), "wait reason 99");
}

fn leaks(alerts: &[GoAlert]) -> Vec<(String, u64, u64)> {
    alerts
        .iter()
        .filter_map(|a| match &a.finding {
            GoFinding::Leak {
                wait_reason,
                count,
                growth,
                ..
            } => Some((wait_reason.clone(), *count, *growth)),
            _ => None,
        })
        .collect()
}

/// `n` goroutines of one creation site parked on `reason` since 0.
fn site(reason: u32, gopc: u64, first_goid: u64, n: u64) -> Vec<(u64, GoParked)> {
    (first_goid..first_goid + n)
        .map(|g| (g, parked(reason, 0, gopc)))
        .collect()
}

#[test]
fn goroutines_piling_up_on_a_channel_leak() {
    let window = 1_000;
    let mut go = watch(window);
    let mut stacks = StackResolver::new();
    let mut kernel = FakeKernel::default();
    let mut found = Vec::new();
    for (t, n) in [(0, 5), (500, 10), (1_000, 20)] {
        kernel.parked = site(2, 0x4000, 100, n);
        found.extend(go.scan(t, STALL, &kernel, &mut stacks));
    }
    assert_eq!(leaks(&found), vec![("chan receive".into(), 20, 15)]);
    // The same leak is not reported at every scan, only once it has doubled.
    kernel.parked = site(2, 0x4000, 100, 30);
    assert!(leaks(&go.scan(1_500, STALL, &kernel, &mut stacks)).is_empty());
    kernel.parked = site(2, 0x4000, 100, 40);
    assert_eq!(
        leaks(&go.scan(2_000, STALL, &kernel, &mut stacks)),
        vec![("chan receive".into(), 40, 20)]
    );
}

#[test]
fn a_steady_worker_pool_does_not_leak() {
    let mut go = watch(1_000);
    let mut stacks = StackResolver::new();
    let mut kernel = FakeKernel::default();
    // 50 workers on a channel and 50 on select, the same at every scan; 40 more appear
    // on a mutex (never a leak: that is the stall rule's business).
    let mut found = Vec::new();
    for (t, on_mutex) in [(0, 0), (500, 20), (1_000, 40), (1_500, 40)] {
        kernel.parked = site(2, 0x4000, 0, 50);
        kernel.parked.extend(site(4, 0x5000, 100, 50));
        kernel.parked.extend(site(1, 0x6000, 200, on_mutex));
        found.extend(go.scan(t, u64::MAX, &kernel, &mut stacks));
    }
    assert!(leaks(&found).is_empty());
}

#[test]
fn goroutine_wait_alerts_only_for_sync_reasons_with_the_waker_stack() {
    let mut go = watch(u64::MAX);
    let mut stacks = StackResolver::new();
    let mut profile: Profile = Vec::new();
    let mut kernel = FakeKernel::default();
    kernel.stacks.insert(3, vec![0x1000, 0x2000]);
    let mut ev = GoWaitEvent {
        kind: observer_common::event_kind::GO_WAIT,
        tgid: PID,
        tid: 9,
        reason: 1,
        goid: 42,
        waker_goid: 43,
        gopc: 0,
        waker_stack_id: 3,
        _pad: 0,
        start_ns: 10,
        duration_ns: 20,
        lock: 0,
        g: 0,
        labels: 0,
        stack: GoStack::default(),
    };
    assert!(
        go.on_wait(&ev, &kernel, &mut stacks, &mut profile)
            .is_empty(),
        "a wait joins its hold episode; the episode is the alert"
    );
    let alerts = go.flush_holds(u64::MAX, true);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    match &a.finding {
        GoFinding::Wait(e) => {
            assert_eq!((e.goid, e.waker_goid, e.duration_ns), (42, Some(43), 20));
            assert_eq!(e.wait_reason, "sync.Mutex.Lock");
            assert_eq!(e.waker_stack.len(), 2, "{:?}", e.waker_stack);
            assert_eq!(e.waiters, 1);
        }
        _ => panic!("not a goroutine wait"),
    }
    assert_eq!((a.tid, a.time_ns), (9, Some(30)));
    // A channel wait goes into the profile only.
    ev.reason = 2;
    assert!(go
        .on_wait(&ev, &kernel, &mut stacks, &mut profile)
        .is_empty());
    assert!(go.flush_holds(u64::MAX, true).is_empty());
    // Both are in the profile, each under its reason, with its length.
    let heads: Vec<(&str, u64, u64)> = profile
        .iter()
        .map(|(frames, ns, count)| (frames[0].as_str(), *ns, *count))
        .collect();
    assert_eq!(
        heads,
        vec![("[sync.Mutex.Lock]", 20, 1), ("[chan receive]", 20, 1)]
    );
    assert_eq!(profile[0].0[1], "[unknown]", "no stack walked");
}

#[test]
fn a_refused_sampling_period_is_asked_again() {
    let mut go = watch(u64::MAX);
    let mut stacks = StackResolver::new();
    let mut profile: Profile = Vec::new();
    let mut kernel = FakeKernel {
        refuse: true,
        ..FakeKernel::default()
    };
    let totals = [(
        GoAggKey {
            tgid: PID,
            reason: 2,
        },
        agg(10_000_000, 10),
    )];
    let drained = || GoDrained {
        totals: &totals,
        samples: &[],
        probes_on_share: 1.0,
    };
    go.drain_aggregates(drained(), &mut kernel, &mut stacks, &mut profile);
    assert_eq!(kernel.periods, vec![MAX_SAMPLE_PERIOD]);
    kernel.refuse = false;
    go.drain_aggregates(drained(), &mut kernel, &mut stacks, &mut profile);
    assert_eq!(kernel.periods, vec![MAX_SAMPLE_PERIOD, MAX_SAMPLE_PERIOD]);
    // Taken: not set again while the rate stays.
    go.drain_aggregates(drained(), &mut kernel, &mut stacks, &mut profile);
    assert_eq!(kernel.periods.len(), 2);
}

/// Probes on a quarter of the time: what they saw stands for four times as much.
#[test]
fn duty_cycled_totals_are_scaled_to_the_whole_time() {
    let mut go = watch(u64::MAX);
    let mut stacks = StackResolver::new();
    let mut profile: Profile = Vec::new();
    let mut kernel = FakeKernel::default();
    let totals = [(
        GoAggKey {
            tgid: PID,
            reason: 2,
        },
        agg(10, 1_000),
    )];
    let drained = |share| GoDrained {
        totals: &totals,
        samples: &[],
        probes_on_share: share,
    };
    go.drain_aggregates(drained(0.25), &mut kernel, &mut stacks, &mut profile);
    go.drain_aggregates(drained(1.0), &mut kernel, &mut stacks, &mut profile);
    let sums: Vec<(u64, u64)> = profile.iter().map(|(_, ns, c)| (*ns, *c)).collect();
    assert_eq!(sums, vec![(4_000, 40), (1_000, 10)]);
}

#[test]
fn sampling_period_follows_the_wait_rate() {
    assert_eq!(sample_period_for(0, 5.0), 1);
    assert_eq!(sample_period_for(1000, 5.0), 1);
    assert_eq!(sample_period_for(256 * 5, 5.0), 1);
    assert_eq!(sample_period_for(256 * 5 + 1, 5.0), 2);
    assert_eq!(sample_period_for(500_000, 5.0), 512);
    assert_eq!(sample_period_for(u64::MAX, 5.0), MAX_SAMPLE_PERIOD);
    assert_eq!(sample_period_for(10, 0.0), INITIAL_SAMPLE_PERIOD);
}

#[test]
fn apportion_keeps_the_total() {
    assert_eq!(apportion(100, &[1, 1, 1]), vec![34, 33, 33]);
    assert_eq!(apportion(10, &[0, 3, 1]), vec![0, 8, 2]);
    assert_eq!(apportion(7, &[0, 0]), vec![4, 3]);
    assert_eq!(apportion(5, &[]), Vec::<u64>::new());
    let parts = apportion(u64::MAX, &[u64::MAX, 1, 2]);
    assert_eq!(
        parts.iter().map(|&p| u128::from(p)).sum::<u128>(),
        u128::from(u64::MAX)
    );
}

#[test]
fn totals_are_split_by_sampled_time() {
    let (a, b, c): (&[u64], &[u64], &[u64]) = (&[1, 2], &[1, 3], &[9]);
    // Reason 4: 1000 waits, 10 ms in all; samples saw stack a for 3 ms, b for 1 ms.
    // Reason 7: no sample this period. Reason 9: samples only (no totals): left out.
    let totals = [(4, agg(1000, 10_000_000)), (7, agg(5, 500))];
    let samples = [
        (4, a, agg(30, 3_000_000)),
        (4, b, agg(30, 1_000_000)),
        (9, c, agg(1, 10)),
    ];
    let shares = split_totals(&totals, &samples);
    assert_eq!(
        shares,
        vec![
            Share {
                reason: 4,
                stack: Some(a),
                ns: 7_500_000,
                count: 500
            },
            Share {
                reason: 4,
                stack: Some(b),
                ns: 2_500_000,
                count: 500
            },
            Share {
                reason: 7,
                stack: None,
                ns: 500,
                count: 5
            },
        ]
    );
}

#[test]
fn a_cut_walk_ends_with_the_truncation_marker() {
    let mut stacks = StackResolver::new();
    let mut walked = GoStack {
        len: 2,
        ..GoStack::default()
    };
    walked.pcs[..2].copy_from_slice(&[0x1000, 0x2000]);
    // No such process: the addresses stay unnamed, but the marker is ours to add.
    let whole = go_stack_frames(&mut stacks, u32::MAX, &walked);
    assert!(whole.iter().all(|f| &*f.name != TRUNCATED_FRAME));
    walked.truncated = 1;
    let cut = go_stack_frames(&mut stacks, u32::MAX, &walked);
    assert_eq!(cut.len(), whole.len() + 1);
    assert_eq!(cut.last().map(|f| &*f.name), Some(TRUNCATED_FRAME));
}

#[test]
fn go_stack_length_is_cut_to_the_array() {
    let stack = GoStack {
        len: u32::MAX,
        truncated: 1,
        pcs: [5; observer_common::GO_STACK_DEPTH],
    };
    assert_eq!(go_stack_pcs(&stack).len(), observer_common::GO_STACK_DEPTH);
    assert!(go_stack_pcs(&GoStack::default()).is_empty());
}

#[test]
fn zero_length_samples_split_time_like_counts() {
    let (a, b): (&[u64], &[u64]) = (&[1], &[2]);
    let shares = split_totals(&[(1, agg(4, 40))], &[(1, a, agg(3, 0)), (1, b, agg(1, 0))]);
    assert_eq!(
        shares.iter().map(|s| (s.ns, s.count)).collect::<Vec<_>>(),
        vec![(30, 3), (10, 1)]
    );
}

#[test]
fn reasons_are_classed_by_text() {
    for r in [
        "sync.Mutex.Lock",
        "sync.RWMutex.RLock",
        "sync.WaitGroup.Wait",
        "sync.Cond.Wait",
        "semacquire",
    ] {
        assert_eq!(classify_reason(r), ReasonClass::Sync, "{r}");
    }
    for r in [
        "chan receive",
        "chan send",
        "select",
        "select (no cases)",
        "chan receive (nil chan)",
    ] {
        assert_eq!(classify_reason(r), ReasonClass::Channel, "{r}");
    }
    for r in [
        "sleep",
        "IO wait",
        "GC worker (idle)",
        "force gc (idle)",
        "wait reason 99",
    ] {
        assert_eq!(classify_reason(r), ReasonClass::Idle, "{r}");
    }
}

/// The profile learns what each wait's reason says: sync waits are blocked time, the rest
/// (channels, select, I/O, sleeps) idle.
#[test]
fn profile_gets_the_reason_class() {
    struct Classes(Vec<ReasonClass>);
    impl GoProfile for Classes {
        fn add(&mut self, _: &[Frame], _: u64, _: u64, class: ReasonClass, _: &GoLabels) {
            self.0.push(class);
        }
    }
    let mut c = Classes(Vec::new());
    for r in [
        "sync.Mutex.Lock",
        "select",
        "IO wait",
        "chan receive",
        "sleep",
        "semacquire",
    ] {
        add_to_profile(&mut c, r, &[], 1, 1, &GoLabels::new());
    }
    use ReasonClass::*;
    assert_eq!(c.0, vec![Sync, Channel, Idle, Channel, Idle, Sync]);
}
