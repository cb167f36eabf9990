/*
 * mutex_read_hold: a glibc mutex held across a blocking read.
 *
 * Thread "refresher" takes config_lock every ~700ms in refresh_from_disk() and, holding it, reads
 * the new configuration from a pipe: read() blocks until thread "feeder" writes it ~300ms later
 * (standing for a slow disk or network file system). "worker-1".."worker-3" look the
 * configuration up every few milliseconds in lookup_config() and wait for the lock meanwhile.
 * The holder is off-CPU, in read(), for the whole hold.
 *
 * usage: mutex_read_hold [SECONDS]   (default 5; prints "ROLE tid=N" lines on stderr, exits 0)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NWORKERS 3

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static int pipe_fds[2];
static char config[64];
static volatile long refreshes;

__attribute__((noinline)) void refresh_from_disk(void)
{
	pthread_mutex_lock(&config_lock);
	if (read(pipe_fds[0], config, sizeof(config)) < 0) /* blocks ~300ms */
		abort();
	pthread_mutex_unlock(&config_lock);
	refreshes++; /* keeps the unlock a real call */
}

__attribute__((noinline)) void *refresher_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "refresher");
	fprintf(stderr, "refresher tid=%d\n", gettid());
	for (;;) {
		usleep(700 * 1000);
		refresh_from_disk();
	}
	return NULL;
}

/* Writes one configuration ~300ms after each refresh starts, i.e. 1s apart, in step with it. */
__attribute__((noinline)) void *feeder_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "feeder");
	usleep(1000 * 1000);
	for (;;) {
		if (write(pipe_fds[1], "config v2", 10) != 10)
			abort();
		usleep(1000 * 1000);
	}
	return NULL;
}

__attribute__((noinline)) int lookup_config(int key)
{
	int c;

	pthread_mutex_lock(&config_lock);
	c = config[key & 63];
	pthread_mutex_unlock(&config_lock);
	return c;
}

__attribute__((noinline)) void *worker_main(void *arg)
{
	char name[16];
	long sum = 0;

	snprintf(name, sizeof(name), "worker-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	fprintf(stderr, "%s tid=%d\n", name, gettid());
	for (int i = 0;; i++) {
		sum += lookup_config(i);
		usleep(5 * 1000);
	}
	return (void *)sum;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	pthread_t t;

	if (pipe(pipe_fds) != 0)
		return 2;
	for (long i = 1; i <= NWORKERS; i++)
		if (pthread_create(&t, NULL, worker_main, (void *)i) != 0)
			return 2;
	if (pthread_create(&t, NULL, refresher_main, NULL) != 0 ||
	    pthread_create(&t, NULL, feeder_main, NULL) != 0)
		return 2;
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
