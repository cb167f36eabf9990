/*
 * tailcall_hold: a glibc mutex held ~300ms in rebuild_index(), built with -O2 so that the unlock
 * is the function's last call and the compiler turns it into a jump (a tail call): when the
 * waiters are woken, rebuild_index() is no longer on the releaser's stack, only its caller is.
 *
 * Thread "maintainer" calls rebuild_index() every ~700ms; "worker-1".."worker-3" take the lock
 * every few milliseconds in worker_update() and wait up to ~300ms each time.
 *
 * usage: tailcall_hold [SECONDS]   (default 5; prints "ROLE tid=N" lines on stderr, exits 0)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NWORKERS 3

static pthread_mutex_t index_lock = PTHREAD_MUTEX_INITIALIZER;
static long index_entries[64];
static volatile long updates;

/* Nothing after the unlock: at -O2 `jmp pthread_mutex_unlock`. */
__attribute__((noinline)) int rebuild_index(void)
{
	pthread_mutex_lock(&index_lock);
	usleep(300 * 1000); /* stands for rebuilding the index */
	for (int i = 0; i < 64; i++)
		index_entries[i] = 0;
	return pthread_mutex_unlock(&index_lock);
}

__attribute__((noinline)) void *maintainer_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "maintainer");
	fprintf(stderr, "maintainer tid=%d\n", gettid());
	for (;;) {
		usleep(700 * 1000);
		if (rebuild_index() != 0)
			abort();
	}
	return NULL;
}

__attribute__((noinline)) void worker_update(int key)
{
	pthread_mutex_lock(&index_lock);
	index_entries[key & 63]++;
	pthread_mutex_unlock(&index_lock);
	updates++;
}

__attribute__((noinline)) void *worker_main(void *arg)
{
	char name[16];

	snprintf(name, sizeof(name), "worker-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	fprintf(stderr, "%s tid=%d\n", name, gettid());
	for (int i = 0;; i++) {
		worker_update(i);
		usleep(5 * 1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	pthread_t t;

	for (long i = 1; i <= NWORKERS; i++)
		if (pthread_create(&t, NULL, worker_main, (void *)i) != 0)
			return 2;
	if (pthread_create(&t, NULL, maintainer_main, NULL) != 0)
		return 2;
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
