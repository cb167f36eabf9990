#!/bin/bash
# usage: bench/progcost.sh OBSERVER_BIN (run where ./many_threads, built from bench/many_threads.c,
# is): BPF run time per run of sched_switch / sched_waking while `observer watch` watches a
# 2,000-thread process for 4 s (kernel.bpf_stats_enabled, /proc/PID/fdinfo, bpftool).
obs=$1
./many_threads 2000 8 >/dev/null & mt=$!
sleep 1
sysctl -q kernel.bpf_stats_enabled=1
$obs watch --pid $mt --duration 4s --no-live -q & o=$!
sleep 3.5
for fd in /proc/$o/fdinfo/*; do
  if grep -q "prog_type" $fd 2>/dev/null; then
    id=$(awk '/prog_id/ {print $2}' $fd); name=$(bpftool prog show id $id 2>/dev/null | head -1 | awk '{print $4}')
    rt=$(awk '/run_time_ns/ {print $2}' $fd); rc=$(awk '/run_cnt/ {print $2}' $fd)
    [ "$name" = "sched_switch" -o "$name" = "sched_waking" ] && echo "$name runs=$rc ns/run=$((rt / (rc>0?rc:1)))"
  fi
done
wait $o; sysctl -q kernel.bpf_stats_enabled=0; kill $mt; wait $mt 2>/dev/null
