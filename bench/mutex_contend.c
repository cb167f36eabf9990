/*
 * mutex_contend: N threads increment one counter under one pthread mutex for T seconds.
 *
 * Usage: mutex_contend [THREADS=4] [SECONDS=2] [INSIDE=1024] [OUTSIDE=32]
 * INSIDE and OUTSIDE are rounds of a xorshift step done with the lock held and without it.
 * Prints one line: "mutex_contend: threads=N secs=T ops=X ops_per_sec=Y blocks_per_sec=Z", where
 * blocks are the process's voluntary context switches (threads that really went to sleep).
 *
 * The critical section is long (about 1 us) next to the work outside it, so a thread that wants
 * the lock usually finds it held for long enough that glibc really parks it in
 * futex(FUTEX_WAIT_PRIVATE) and the unlocker wakes it: on 2 cores with 4 threads that is about
 * 70,000 blocking waits per second, each one running observer's sched_switch and sched_waking
 * programs. A shorter critical section mostly makes futex waits that return EAGAIN at once,
 * which never reach the scheduler and would not exercise observer at all.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t counter;
static atomic_int stop;
static int inside = 1024, outside = 32;

/* A little work so that the holder keeps the lock long enough for others to queue on it. */
static uint64_t work(uint64_t x, int rounds) {
    for (int i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static void *worker(void *arg) {
    uint64_t x = (uintptr_t)arg * 2654435761u + 1;
    uint64_t *ops = calloc(1, sizeof *ops);
    if (!ops)
        return NULL;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pthread_mutex_lock(&lock);
        counter++;
        x = work(x, inside);
        pthread_mutex_unlock(&lock);
        x = work(x, outside);
        (*ops)++;
    }
    if (x == 42) /* keep the work from being optimized away */
        fputc(' ', stderr);
    return ops;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    double secs = argc > 2 ? atof(argv[2]) : 2.0;
    if (argc > 3)
        inside = atoi(argv[3]);
    if (argc > 4)
        outside = atoi(argv[4]);
    if (threads < 1 || threads > 1024 || !(secs > 0) || inside < 0 || outside < 0) {
        fprintf(stderr, "usage: mutex_contend [THREADS 1..1024] [SECONDS > 0] [INSIDE] [OUTSIDE]\n");
        return 2;
    }
    pthread_t *tids = calloc(threads, sizeof *tids);
    if (!tids)
        return 1;
    double start = now();
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&tids[i], NULL, worker, (void *)(uintptr_t)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    uint64_t total = 0;
    for (int i = 0; i < threads; i++) {
        void *ret = NULL;
        pthread_join(tids[i], &ret);
        if (ret) {
            total += *(uint64_t *)ret;
            free(ret);
        }
    }
    double elapsed = now() - start;
    struct rusage ru = {0};
    getrusage(RUSAGE_SELF, &ru);
    printf("mutex_contend: threads=%d secs=%.3f ops=%llu ops_per_sec=%.0f blocks_per_sec=%.0f\n",
           threads, elapsed, (unsigned long long)total, total / elapsed, ru.ru_nvcsw / elapsed);
    return counter == total ? 0 : 1;
}
