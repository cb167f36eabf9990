/*
 * contention: many threads hammer one mutex with tiny critical sections.
 *
 * THREADS threads ("hammer") lock, bump a counter, and unlock in a tight loop for SECONDS
 * seconds. On a small machine this blocks in futex thousands of times a second: with a tiny
 * --threshold every one of those waits is an event, far more than a small ring buffer holds.
 *
 * usage: contention [SECONDS] [THREADS]   (defaults 3 and 4; exits 0)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t hot_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile long counter;
static volatile int stop;

__attribute__((noinline)) void bump(void)
{
	pthread_mutex_lock(&hot_lock);
	for (int i = 0; i < 50; i++)
		counter++;
	pthread_mutex_unlock(&hot_lock);
}

__attribute__((noinline)) void *hammer_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "hammer");
	while (!stop)
		bump();
	return NULL;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 3;
	int nthreads = argc > 2 ? atoi(argv[2]) : 4;
	pthread_t threads[64];
	struct timespec end = { .tv_sec = seconds };

	if (nthreads < 1 || nthreads > 64)
		nthreads = 4;
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, hammer_main, NULL) != 0)
			return 2;
	nanosleep(&end, NULL);
	stop = 1;
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	return 0;
}
