/*
 * uprobe_loop: calls one small function N times and prints the time per call, so that the same
 * loop with an empty uprobe on that function (bpftrace -e 'uprobe:BIN:probed {}') gives the price
 * of one uprobe hit on this machine: the breakpoint trap, the out-of-line single step and the
 * return to user space. observer's goroutine probes pay it on every runtime.gopark and
 * runtime.ready.
 *
 * Usage: uprobe_loop [CALLS=200000]
 * Prints "uprobe_loop: calls=N ns_per_call=X".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* noinline and a visible side effect, so that every iteration really enters the function. */
__attribute__((noinline)) void probed(volatile long *counter) { (*counter)++; }

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 200000;
    if (calls < 1) {
        fprintf(stderr, "usage: uprobe_loop [CALLS >= 1]\n");
        return 2;
    }
    volatile long counter = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < calls; i++)
        probed(&counter);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("uprobe_loop: calls=%ld ns_per_call=%.1f\n", calls, ns / calls);
    return counter == calls ? 0 : 1;
}
