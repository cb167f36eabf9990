/*
 * thread_death: a worker of a pool silently dies on an error path.
 *
 * start_workers() starts "worker-1".."worker-3", each running worker_loop() over its own queue and
 * waiting on a condition variable while idle. main dispatches an item every 50ms, round robin. At
 * ~500ms it dispatches a malformed item to worker 2, whose handle_item() "handles" it by calling
 * pthread_exit(NULL). The process keeps running (worker 2's queue just fills up) and exits 0;
 * the healthy workers live until the process ends.
 *
 * usage: thread_death [SECONDS] [-v]   (default 4; -v reports the death on stderr)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NWORKERS 3
#define QUEUE_CAP 64

struct item {
	int id;
	int malformed;
};

struct worker {
	int id;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t ready;
	struct item queue[QUEUE_CAP];
	int head, count;
	long checksum;
};

static struct worker workers[NWORKERS];
static int verbose;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((noinline)) void handle_item(struct worker *w, struct item it)
{
	if (it.malformed) {
		/* The bug: an "impossible" case ends the thread instead of reporting an error. */
		if (verbose)
			fprintf(stderr, "worker-%d tid=%ld: malformed item %d, exiting\n", w->id,
				(long)syscall(SYS_gettid), it.id);
		pthread_exit(NULL);
	}
	for (int i = 0; i < 1000; i++)
		w->checksum = w->checksum * 31 + it.id + i;
}

__attribute__((noinline)) void *worker_loop(void *arg)
{
	struct worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "worker-%d", w->id);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		struct item it;

		pthread_mutex_lock(&w->lock);
		while (w->count == 0)
			pthread_cond_wait(&w->ready, &w->lock);
		it = w->queue[w->head];
		w->head = (w->head + 1) % QUEUE_CAP;
		w->count--;
		pthread_mutex_unlock(&w->lock);
		handle_item(w, it);
	}
	return NULL;
}

__attribute__((noinline)) void start_workers(void)
{
	for (int i = 0; i < NWORKERS; i++) {
		struct worker *w = &workers[i];

		w->id = i + 1;
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->ready, NULL);
		if (pthread_create(&w->thread, NULL, worker_loop, w) != 0)
			exit(2);
	}
}

__attribute__((noinline)) void dispatch(struct worker *w, struct item it)
{
	pthread_mutex_lock(&w->lock);
	/* A full queue drops the item: that is how a dead worker's backlog shows up. */
	if (w->count < QUEUE_CAP) {
		w->queue[(w->head + w->count) % QUEUE_CAP] = it;
		w->count++;
		pthread_cond_signal(&w->ready);
	}
	pthread_mutex_unlock(&w->lock);
}

int main(int argc, char **argv)
{
	int seconds = 4;
	long start, bad_sent = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0)
			verbose = 1;
		else
			seconds = atoi(argv[i]);
	}
	start_workers();
	start = now_ms();
	for (int id = 0; now_ms() - start < seconds * 1000L; id++) {
		struct item it = { .id = id, .malformed = 0 };

		if (!bad_sent && now_ms() - start >= 500) {
			it.malformed = 1;
			dispatch(&workers[1], it);
			bad_sent = 1;
		} else {
			dispatch(&workers[id % NWORKERS], it);
		}
		usleep(50 * 1000);
	}
	return 0;
}
