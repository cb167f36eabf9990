/*
 * many_threads: a process with many threads that mostly sleep or wait and now and then contend,
 * for measuring what observer itself costs (CPU, memory, attach time) on a large process.
 *
 * Usage: many_threads [THREADS=2000] [SECONDS=10] [TICKS=0]
 * Prints "many_threads: N threads started" once every thread runs (the bench attaches then), and
 * at the end "many_threads: threads=N secs=T ops=X". With TICKS=1 it also prints
 * "many_threads: tick secs=T ops=X" every 500 ms (cumulative since the start), so that a reader
 * can take the throughput of any window without stopping the process.
 *
 * Even threads sleep 50-150 ms, then take one of 8 mutexes for a few microseconds. Odd threads
 * wait on one condition variable that the main thread broadcasts every 500 ms, then take a mutex
 * the same way: a herd of waiters waking at once is where a real server contends.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NLOCKS 8

static pthread_mutex_t locks[NLOCKS];
static pthread_mutex_t cv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint64_t generation;
static atomic_int stop;
static atomic_ullong ops;

static void spin_us(int us) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}

static void contend(uintptr_t id) {
    pthread_mutex_t *m = &locks[id % NLOCKS];
    pthread_mutex_lock(m);
    spin_us(5);
    pthread_mutex_unlock(m);
    atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
}

static void *sleeper(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    unsigned seed = (unsigned)id;
    while (!atomic_load(&stop)) {
        struct timespec ts = {0, (50 + rand_r(&seed) % 100) * 1000000L};
        nanosleep(&ts, NULL);
        contend(id);
    }
    return NULL;
}

static void *waiter(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    uint64_t seen = 0;
    while (!atomic_load(&stop)) {
        pthread_mutex_lock(&cv_lock);
        while (generation == seen && !atomic_load(&stop))
            pthread_cond_wait(&cv, &cv_lock);
        seen = generation;
        pthread_mutex_unlock(&cv_lock);
        contend(id);
    }
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2000;
    double secs = argc > 2 ? atof(argv[2]) : 10.0;
    int ticks = argc > 3 ? atoi(argv[3]) : 0;
    if (threads < 1 || threads > 100000 || !(secs > 0)) {
        fprintf(stderr, "usage: many_threads [THREADS] [SECONDS > 0] [TICKS=0|1]\n");
        return 2;
    }
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_init(&locks[i], NULL);
    pthread_t *tids = calloc(threads, sizeof *tids);
    pthread_attr_t attr;
    if (!tids || pthread_attr_init(&attr) != 0)
        return 1;
    /* Small stacks: 2,000 default 8 MiB stacks are fine as address space, but nothing needs them. */
    pthread_attr_setstacksize(&attr, 128 * 1024);
    int started = 0;
    for (; started < threads; started++) {
        void *(*fn)(void *) = started % 2 ? waiter : sleeper;
        if (pthread_create(&tids[started], &attr, fn, (void *)(uintptr_t)started) != 0) {
            perror("pthread_create");
            break;
        }
    }
    printf("many_threads: %d threads started\n", started);
    fflush(stdout);
    double start = now();
    while (now() - start < secs) {
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&cv_lock);
        generation++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&cv_lock);
        if (ticks) {
            printf("many_threads: tick secs=%.3f ops=%llu\n", now() - start,
                   (unsigned long long)atomic_load(&ops));
            fflush(stdout);
        }
    }
    atomic_store(&stop, 1);
    pthread_mutex_lock(&cv_lock);
    generation++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&cv_lock);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    printf("many_threads: threads=%d secs=%.3f ops=%llu\n", started, now() - start,
           (unsigned long long)atomic_load(&ops));
    return started == threads ? 0 : 1;
}
