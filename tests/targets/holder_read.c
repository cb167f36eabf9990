/*
 * holder_read: a mutex held across a blocking read().
 *
 * Thread "holder" takes cache_lock and, still holding it, refreshes the cache from "disk":
 * refresh_from_disk() reads a pipe that thread "feeder" writes one byte into only after 2 s.
 * Two "worker" threads take cache_lock every millisecond and so wait the whole 2 s. The
 * holder is off CPU all that time: what it waits in (read, refresh_from_disk) is the story.
 *
 * usage: holder_read [ROUNDS]   (default 2; exits 0 afterwards, prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static int disk[2];
static volatile long cache_version;
static volatile long lookups;

__attribute__((noinline)) long refresh_from_disk(void)
{
	char byte;

	if (read(disk[0], &byte, 1) != 1)
		abort();
	return byte;
}

__attribute__((noinline)) void *holder_main(void *arg)
{
	long rounds = (long)arg;

	pthread_setname_np(pthread_self(), "holder");
	for (long i = 0; i < rounds; i++) {
		usleep(300 * 1000);
		pthread_mutex_lock(&cache_lock);
		cache_version += refresh_from_disk();
		pthread_mutex_unlock(&cache_lock);
		cache_version++;
	}
	return NULL;
}

__attribute__((noinline)) void *feeder_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "feeder");
	for (;;) {
		sleep(2);
		if (write(disk[1], "x", 1) != 1)
			abort();
		/* The next round starts 300 ms after the holder got its byte. */
		usleep(300 * 1000);
	}
	return NULL;
}

__attribute__((noinline)) void cache_lookup(void)
{
	pthread_mutex_lock(&cache_lock);
	lookups++;
	pthread_mutex_unlock(&cache_lock);
	lookups++;
}

__attribute__((noinline)) void *worker_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "worker");
	for (;;) {
		cache_lookup();
		usleep(1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 2;
	pthread_t holder, feeder, worker;

	if (pipe(disk) != 0)
		return 1;
	pthread_create(&feeder, NULL, feeder_main, NULL);
	pthread_create(&worker, NULL, worker_main, NULL);
	pthread_create(&worker, NULL, worker_main, NULL);
	pthread_create(&holder, NULL, holder_main, (void *)rounds);
	pthread_join(holder, NULL);
	return 0;
}
