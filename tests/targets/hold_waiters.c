/*
 * hold_waiters: three threads queue behind one long hold of a lock.
 *
 * Thread "maintenance" holds table_lock ~300ms every ~1s (the bug). Two "writer" threads
 * (in writer_update) and one "reader" thread (in reader_lookup) take the lock every few
 * milliseconds, so each hold keeps all three waiting: one hold, three waiters, two distinct
 * waiter stacks.
 *
 * usage: hold_waiters [SECONDS]   (default 5; exits 0 afterwards, prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static long table_version;
static volatile long compactions;
static volatile long sink;

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

__attribute__((noinline)) long writer_update(long delta)
{
	long version;

	pthread_mutex_lock(&table_lock);
	table_version += delta;
	version = table_version;
	pthread_mutex_unlock(&table_lock);
	sink++;
	return version;
}

__attribute__((noinline)) long reader_lookup(void)
{
	long version;

	pthread_mutex_lock(&table_lock);
	version = table_version;
	pthread_mutex_unlock(&table_lock);
	sink++;
	return version;
}

__attribute__((noinline)) void *writer_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "writer");
	for (;;) {
		writer_update(1);
		usleep(5 * 1000);
	}
	return NULL;
}

__attribute__((noinline)) void *reader_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "reader");
	for (;;) {
		reader_lookup();
		usleep(5 * 1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	pthread_t t;

	if (pthread_create(&t, NULL, writer_main, NULL) != 0 ||
	    pthread_create(&t, NULL, writer_main, NULL) != 0 ||
	    pthread_create(&t, NULL, reader_main, NULL) != 0 ||
	    pthread_create(&t, NULL, maintenance_main, NULL) != 0)
		return 2;
	/* Whole seconds of sleep, then exit without joining: the threads never finish on their own. */
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
