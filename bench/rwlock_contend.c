/*
 * rwlock_contend: N threads read and write one table under one pthread rwlock for T seconds.
 *
 * Usage: rwlock_contend [THREADS=4] [SECONDS=2] [INSIDE=1024] [OUTSIDE=32] [WRITE_EVERY=4]
 * Each thread takes the lock for writing every WRITE_EVERY-th operation and for reading otherwise,
 * does INSIDE rounds of a xorshift step with it held and OUTSIDE rounds without it.
 * Prints one line: "rwlock_contend: threads=N secs=T ops=X ops_per_sec=Y blocks_per_sec=Z", where
 * blocks are the process's voluntary context switches (threads that really went to sleep).
 *
 * As in mutex_contend.c, the critical section (~1 us) is long next to the work outside it: readers
 * queue behind each writer on the lock's __wrphase_futex and writers behind readers and writers
 * on __writers_futex, so the lock really parks threads in futex waits, tens of thousands of times
 * a second, each one going through observer's sched_switch and sched_waking programs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static uint64_t table[64];
static atomic_int stop;
static int inside = 1024, outside = 32, write_every = 4;

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
        if (*ops % write_every == 0) {
            pthread_rwlock_wrlock(&lock);
            x = work(x, inside);
            table[x & 63]++;
        } else {
            pthread_rwlock_rdlock(&lock);
            x = work(x ^ table[x & 63], inside);
        }
        pthread_rwlock_unlock(&lock);
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
    if (argc > 5)
        write_every = atoi(argv[5]);
    if (threads < 1 || threads > 1024 || !(secs > 0) || inside < 0 || outside < 0 ||
        write_every < 1) {
        fprintf(stderr, "usage: rwlock_contend [THREADS 1..1024] [SECONDS > 0] [INSIDE] [OUTSIDE] "
                        "[WRITE_EVERY >= 1]\n");
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
    printf("rwlock_contend: threads=%d secs=%.3f ops=%llu ops_per_sec=%.0f blocks_per_sec=%.0f\n",
           threads, elapsed, (unsigned long long)total, total / elapsed, ru.ru_nvcsw / elapsed);
    return 0;
}
