/*
 * cond_pool: a worker pool that is idle, not stuck.
 *
 * Eight threads "pool-1".."pool-8" wait for jobs in next_job(): four in pthread_cond_wait, four
 * in pthread_cond_timedwait with a 2 s timeout (re-armed when it expires). Thread "producer"
 * queues one job every ~1.5 s and signals the condition variable, so a waiter is woken rarely and
 * the queue lock is never held for long. Nothing here is a lock hold, a stall or a deadlock.
 *
 * usage: cond_pool [SECONDS]   (default 4; prints nothing, exits 0)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NPOOL 8

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_ready = PTHREAD_COND_INITIALIZER;
static int queued;
static volatile long done;

__attribute__((noinline)) int next_job(int timed)
{
	int got = 0;

	pthread_mutex_lock(&queue_lock);
	while (queued == 0) {
		if (timed) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 2;
			pthread_cond_timedwait(&job_ready, &queue_lock, &until);
		} else {
			pthread_cond_wait(&job_ready, &queue_lock);
		}
	}
	got = queued--;
	pthread_mutex_unlock(&queue_lock);
	return got;
}

__attribute__((noinline)) void *pool_main(void *arg)
{
	char name[16];
	long id = (long)arg;

	snprintf(name, sizeof(name), "pool-%ld", id);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		next_job(id % 2 == 0);
		done++;
	}
	return NULL;
}

__attribute__((noinline)) void *producer_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "producer");
	for (;;) {
		usleep(1500 * 1000);
		pthread_mutex_lock(&queue_lock);
		queued++;
		pthread_cond_signal(&job_ready);
		pthread_mutex_unlock(&queue_lock);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 4;
	pthread_t t;

	for (long i = 1; i <= NPOOL; i++)
		if (pthread_create(&t, NULL, pool_main, (void *)i) != 0)
			return 2;
	if (pthread_create(&t, NULL, producer_main, NULL) != 0)
		return 2;
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
