/*
 * rwlock_hold: a pthread_rwlock held for writing across slow work while readers queue behind it.
 *
 * Thread "rebuilder" takes table_lock for writing every ~700ms in rebuild_table() and keeps it
 * ~300ms (the bug). Threads "reader-1".."reader-3" look the table up every few milliseconds in
 * reader_lookup() with a read lock, so each waits up to ~300ms whenever the writer holds it:
 * glibc parks readers on the lock's __wrphase_futex (lock + 8) and records the writer's tid in
 * __cur_writer (lock + 24).
 *
 * usage: rwlock_hold [SECONDS]   (default 5; prints "ROLE tid=N" lines on stderr, exits 0)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NREADERS 3

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static long table[64];
static volatile long rebuilds;

__attribute__((noinline)) void rebuild_table(void)
{
	pthread_rwlock_wrlock(&table_lock);
	usleep(300 * 1000); /* stands for reloading the table from its source */
	for (int i = 0; i < 64; i++)
		table[i]++;
	pthread_rwlock_unlock(&table_lock);
	rebuilds++; /* keeps the unlock a real call */
}

__attribute__((noinline)) void *rebuilder_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "rebuilder");
	fprintf(stderr, "rebuilder tid=%d\n", gettid());
	for (;;) {
		usleep(700 * 1000);
		rebuild_table();
	}
	return NULL;
}

__attribute__((noinline)) long reader_lookup(int key)
{
	long value;

	pthread_rwlock_rdlock(&table_lock);
	value = table[key & 63];
	pthread_rwlock_unlock(&table_lock);
	return value + 1;
}

__attribute__((noinline)) void *reader_main(void *arg)
{
	char name[16];
	long sum = 0;

	snprintf(name, sizeof(name), "reader-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	fprintf(stderr, "%s tid=%d\n", name, gettid());
	for (int i = 0;; i++) {
		sum += reader_lookup(i);
		usleep(5 * 1000);
	}
	return (void *)sum;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	pthread_t t;

	for (long i = 1; i <= NREADERS; i++)
		if (pthread_create(&t, NULL, reader_main, (void *)i) != 0)
			return 2;
	if (pthread_create(&t, NULL, rebuilder_main, NULL) != 0)
		return 2;
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
