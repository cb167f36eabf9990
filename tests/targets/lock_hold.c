/*
 * lock_hold: a lock held across slow work.
 *
 * Thread "maintenance" compacts a shared table every ~1s and keeps table_lock held for ~300ms
 * while it does (the bug). Thread "worker" updates the table every few milliseconds and so waits
 * for the lock for up to ~300ms each time maintenance runs.
 *
 * usage: lock_hold [SECONDS]   (default 5; exits 0 afterwards, prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static long table_version;
static volatile long compactions;
static volatile long updates;

__attribute__((noinline)) void maintenance_compact(void)
{
	pthread_mutex_lock(&table_lock);
	usleep(300 * 1000); /* stands for rewriting the table on disk */
	table_version++;
	pthread_mutex_unlock(&table_lock);
	/* Work after the unlock keeps the unlock a real call, not a tail jump out of this frame. */
	compactions++;
}

__attribute__((noinline)) void *maintenance_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "maintenance");
	for (;;) {
		usleep(700 * 1000);
		maintenance_compact();
	}
	return NULL;
}

__attribute__((noinline)) long worker_update(long delta)
{
	long version;

	pthread_mutex_lock(&table_lock);
	table_version += delta;
	version = table_version;
	pthread_mutex_unlock(&table_lock);
	updates++;
	return version;
}

__attribute__((noinline)) void *worker_main(void *arg)
{
	long last = 0;

	(void)arg;
	pthread_setname_np(pthread_self(), "worker");
	for (;;) {
		last = worker_update(1);
		usleep(5 * 1000);
	}
	return (void *)last;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	pthread_t maintenance, worker;

	if (pthread_create(&worker, NULL, worker_main, NULL) != 0 ||
	    pthread_create(&maintenance, NULL, maintenance_main, NULL) != 0)
		return 2;
	/* Whole seconds of sleep, then exit without joining: the threads never finish on their own. */
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
