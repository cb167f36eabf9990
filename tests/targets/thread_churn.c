/*
 * thread_churn: many short-lived threads, created in waves and joined.
 *
 * main creates WAVE threads, joins them all, and repeats until TOTAL threads have run. Each thread
 * does a few microseconds of work and returns. Every thread is joined, and all come from one
 * creation site (spawn_wave), so a thread-per-request program like this must neither flood the
 * alert stream nor make observer's memory grow with the number of threads ever seen.
 *
 * With PAUSE, it then sleeps that many seconds before exiting: the process stays, idle, after
 * its churn, which is when whatever the churn left behind in observer shows as cost.
 *
 * usage: thread_churn [TOTAL] [WAVE] [PAUSE]   (defaults 100000, 100, 0; prints "done N" on stdout)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_WAVE 1024

static volatile long sink;

__attribute__((noinline)) void *short_task(void *arg)
{
	long acc = (long)arg;

	for (int i = 0; i < 200; i++)
		acc = acc * 31 + i;
	sink = acc;
	return NULL;
}

__attribute__((noinline)) int spawn_wave(pthread_t *threads, int n, long base)
{
	int started = 0;

	for (int i = 0; i < n; i++) {
		if (pthread_create(&threads[i], NULL, short_task, (void *)(base + i)) != 0)
			break;
		started++;
	}
	return started;
}

int main(int argc, char **argv)
{
	long total = argc > 1 ? atol(argv[1]) : 100000;
	int wave = argc > 2 ? atoi(argv[2]) : 100;
	int pause_s = argc > 3 ? atoi(argv[3]) : 0;
	pthread_t threads[MAX_WAVE];
	long done = 0;

	if (wave < 1 || wave > MAX_WAVE)
		wave = 100;
	while (done < total) {
		int n = total - done < wave ? (int)(total - done) : wave;
		int started = spawn_wave(threads, n, done);

		for (int i = 0; i < started; i++)
			pthread_join(threads[i], NULL);
		if (started == 0)
			return 2;
		done += started;
	}
	printf("done %ld\n", done);
	fflush(stdout);
	if (pause_s > 0)
		sleep(pause_s);
	return 0;
}
