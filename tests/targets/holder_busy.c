/*
 * holder_busy: a mutex held 2 s by a thread that computes, built with -O2.
 *
 * Thread "holder" rebuilds an index while holding index_lock: rebuild_index() spins for 2 s on
 * CPU, then unlocks. At -O2 that unlock is a tail call (a jump into pthread_mutex_unlock), so
 * whoever releases the lock is seen in pthread_mutex_unlock called from holder_main, never from
 * rebuild_index: only samples taken while it held the lock name the function. Two "worker"
 * threads take index_lock every millisecond and wait the whole 2 s.
 *
 * usage: holder_busy [ROUNDS [LINGER]]   (default 2 rounds; then the workers go on alone for
 * LINGER seconds, default 0; exits 0 afterwards, prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t index_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long index_sum;
static volatile long lookups;

/* Not inlined: a local whose address escapes in rebuild_index would keep its frame alive and
 * stop the compiler from turning the unlock into a tail call. */
__attribute__((noinline)) static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

__attribute__((noinline)) void rebuild_index(void)
{
	long start;

	pthread_mutex_lock(&index_lock);
	start = now_ms();
	do {
		for (unsigned long i = 0; i < 1000000; i++)
			index_sum += i * i;
	} while (now_ms() - start < 2000);
	pthread_mutex_unlock(&index_lock);
}

__attribute__((noinline)) void *holder_main(void *arg)
{
	long rounds = (long)arg;

	pthread_setname_np(pthread_self(), "holder");
	for (long i = 0; i < rounds; i++) {
		usleep(300 * 1000);
		rebuild_index();
	}
	return NULL;
}

__attribute__((noinline)) void index_lookup(void)
{
	pthread_mutex_lock(&index_lock);
	lookups++;
	pthread_mutex_unlock(&index_lock);
	lookups++;
}

__attribute__((noinline)) void *worker_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "worker");
	for (;;) {
		index_lookup();
		usleep(1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 2;
	long linger = argc > 2 ? atol(argv[2]) : 0;
	pthread_t holder, worker;

	pthread_create(&worker, NULL, worker_main, NULL);
	pthread_create(&worker, NULL, worker_main, NULL);
	pthread_create(&holder, NULL, holder_main, (void *)rounds);
	pthread_join(holder, NULL);
	sleep(linger);
	return 0;
}
