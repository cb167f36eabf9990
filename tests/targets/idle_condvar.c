/*
 * idle_condvar: a process that is idle, not stuck.
 *
 * Four threads "idle-1".."idle-4" wait in wait_for_work() on a condition variable that nobody
 * signals, one thread "sleeper" sleeps in nanosleep, main sleeps too. After SECONDS the process
 * exits 0 (the waiting threads end with it). Nothing here is a lock wait, a stall or a deadlock.
 *
 * usage: idle_condvar [SECONDS]   (default 3; prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NIDLE 4

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static int pending;

__attribute__((noinline)) int wait_for_work(void)
{
	int got;

	pthread_mutex_lock(&queue_lock);
	while (pending == 0)
		pthread_cond_wait(&work_ready, &queue_lock);
	got = pending--;
	pthread_mutex_unlock(&queue_lock);
	return got;
}

__attribute__((noinline)) void *idle_main(void *arg)
{
	char name[16];

	snprintf(name, sizeof(name), "idle-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	for (;;)
		wait_for_work();
	return NULL;
}

__attribute__((noinline)) void nap(int seconds)
{
	struct timespec ts = { .tv_sec = seconds, .tv_nsec = 0 };

	while (nanosleep(&ts, &ts) != 0)
		;
}

__attribute__((noinline)) void *sleeper_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sleeper");
	nap((int)(long)arg);
	return NULL;
}

int main(int argc, char **argv)
{
	long seconds = argc > 1 ? atol(argv[1]) : 3;
	pthread_t t;

	for (long i = 1; i <= NIDLE; i++)
		if (pthread_create(&t, NULL, idle_main, (void *)i) != 0)
			return 2;
	/* The sleeper outlives the process so that no thread ends before the process does. */
	if (pthread_create(&t, NULL, sleeper_main, (void *)(seconds + 10)) != 0)
		return 2;
	nap((int)seconds);
	return 0;
}
