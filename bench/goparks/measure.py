#!/usr/bin/env python3
"""What the goroutine probes cost a park-heavy Go program: bench/goparks bare and under
`observer run`, side by side, as ratios of the bare run of the same round; and the time spent
inside the go_park / go_ready programs (kernel BPF statistics).

Run as root from the workspace root, after `cargo build --release -p observer-user`:

    python3 bench/goparks/measure.py --observer target/release/observer [--before OLD_BINARY]
        [--rounds 5] [--seconds 2] [--stats-seconds 12]

`--before` adds the same runs with another observer build (e.g. the previous commit's) so a
change can be compared in one invocation. Prints Markdown for the Go section of BENCHMARKS.md.
Round order alternates (bare first, then bare last) so that a drift of the machine favours no
variant; nothing here is asserted.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
PROGRAMS = ("go_park", "go_ready")


def build_goparks(out_dir):
    src = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(out_dir, "goparks")
    env = dict(os.environ, GO111MODULE="off")
    subprocess.run(["go", "build", "-o", binary, "main.go"], cwd=src, env=env, check=True)
    return binary


def parse(out):
    m = re.search(r"goparks:.*pingpong_per_sec=(\d+) mutex_per_sec=(\d+)", out)
    return (float(m.group(1)), float(m.group(2))) if m else None


def run(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got = parse(p.stdout)
    if p.returncode != 0 or got is None:
        sys.exit(f"failed: {' '.join(argv)}\n{p.stdout}\n{p.stderr[-2000:]}")
    return got, p.stderr


def variants(args, goparks):
    work = [goparks, "-seconds", str(args.seconds)]
    out = [("bare", work)]
    for label, binary in [("", args.observer)] + ([("before: ", args.before)] if args.before else []):
        out.append((f"{label}observer run --go-max-parks 0", [binary, "run", "-q", "--go-max-parks", "0", "--"] + work))
        out.append((f"{label}observer run (default guard)", [binary, "run", "-q", "--"] + work))
    out.append(("observer run --no-go", [args.observer, "run", "-q", "--no-go", "--"] + work))
    return out


def fmt(x):
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def prog_stats(observer_pid):
    """run_time_ns / run_cnt of the Go programs that process `observer_pid` holds."""
    found = {}
    fd_dir = f"/proc/{observer_pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return found
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") != "anon_inode:bpf-prog":
                continue
            info = dict(
                line.split(":\t", 1) for line in open(f"/proc/{observer_pid}/fdinfo/{fd}").read().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        prog_id = info.get("prog_id", "").strip()
        show = subprocess.run(["bpftool", "-j", "prog", "show", "id", prog_id], stdout=subprocess.PIPE, text=True)
        try:
            name = json.loads(show.stdout).get("name", "")
        except ValueError:
            continue
        if name in PROGRAMS:
            found[name] = (int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0)))
    return found


def measure_programs(binary, goparks, seconds):
    """The last statistics read before the observer exits (its programs go with it)."""
    p = subprocess.Popen(
        [binary, "run", "-q", "--go-max-parks", "0", "--", goparks, "-seconds", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = {}
    while p.poll() is None:
        # Per program: its fds close one by one while observer exits, so a late read can miss
        # some; the statistics only grow, so the largest count read is the latest.
        for name, st in prog_stats(p.pid).items():
            if st[1] >= last.get(name, (0, 0))[1]:
                last[name] = st
        time.sleep(0.2)
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--observer", required=True)
    ap.add_argument("--before")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2)
    # Long enough for observer to adapt its sampling period (at its first drain, after 5 s).
    ap.add_argument("--stats-seconds", type=float, default=12)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: observer loads eBPF programs")
    tmp = tempfile.mkdtemp(prefix="goparks-")
    try:
        goparks = build_goparks(tmp)
        vs = variants(args, goparks)
        results = {label: [] for label, _ in vs}
        for r in range(args.rounds):
            order = vs if r % 2 == 0 else list(reversed(vs))
            for label, argv in order:
                results[label].append(run(argv)[0])
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

        old = open(STATS_SYSCTL).read().strip()
        open(STATS_SYSCTL, "w").write("1")
        try:
            stats = [("", measure_programs(args.observer, goparks, args.stats_seconds))]
            if args.before:
                stats.append(("before: ", measure_programs(args.before, goparks, args.stats_seconds)))
        finally:
            open(STATS_SYSCTL, "w").write(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bare = results["bare"]
    print("| variant | channel round trips/s (median, min-max) | ratio vs bare | sync.Mutex ops/s (median) | ratio vs bare |")
    print("| --- | --- | --- | --- | --- |")
    for label, _ in vs:
        rs = results[label]
        pp = [x[0] for x in rs]
        mx = [x[1] for x in rs]
        pr = [a[0] / b[0] for a, b in zip(rs, bare)]
        mr = [a[1] / b[1] for a, b in zip(rs, bare)]
        print(
            f"| {label} | {fmt(statistics.median(pp))} ({fmt(min(pp))}-{fmt(max(pp))}) | "
            f"{statistics.median(pr):.3f}x ({min(pr):.3f}x-{max(pr):.3f}x) | {fmt(statistics.median(mx))} | "
            f"{statistics.median(mr):.2f}x ({min(mr):.2f}x-{max(mr):.2f}x) |"
        )
    print()
    print(f"kernel BPF statistics, one `observer run --go-max-parks 0` of goparks -seconds {args.stats_seconds:g}:")
    print()
    print("| build | program | runs | ns/run |")
    print("| --- | --- | --- | --- |")
    for label, st in stats:
        for name in PROGRAMS:
            ns, cnt = st.get(name, (0, 0))
            per = f"{ns / cnt:.0f}" if cnt else "n/a"
            print(f"| {label.rstrip(': ') or 'this build'} | {name} | {cnt} | {per} |")
    print()
    print("per-round channel round trips/s:")
    for label, _ in vs:
        print(f"- {label}: " + ", ".join(fmt(x[0]) for x in results[label]))


if __name__ == "__main__":
    main()
