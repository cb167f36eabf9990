/*
 * away_stall: a worker pool whose home is its queue, stalled twice away from home.
 *
 * Four threads "worker" take jobs from a queue in next_job() (pthread_cond_wait: their home).
 * The main thread paces everything from one place, pace() (a 20 ms usleep: its home), and
 * queues a quick job every tick. Timeline (seconds):
 *   0 - 8   healthy: quick jobs only.
 *   8 - 11.5 main holds the application lock `app_lock` (built on a condition variable, like
 *           MariaDB's row locks) and queues a "locked" job: the worker that takes it waits in
 *           app_lock_acquire() (pthread_cond_timedwait, re-armed every second) until main
 *           releases the lock in app_lock_release().
 *   12.5    a job that calls do_slow_export(), which sleeps 3 s.
 *   16 - 20 no jobs: the pool idles at home; then exits 0.
 * Prints "locked tid=N" and "export tid=N" (the workers that took those jobs) and "main tid=N"
 * on stderr.
 *
 * usage: away_stall
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NWORKERS 4
#define TICK_MS 20

enum job { QUICK = 1, LOCKED, EXPORT };

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_ready = PTHREAD_COND_INITIALIZER;
static int queue[256];
static int head, tail;
static volatile long sink;

/* An application lock built on a condition variable, as databases build their row locks. */
struct app_lock {
	pthread_mutex_t m;
	pthread_cond_t released;
	int held;
};
static struct app_lock app = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

__attribute__((noinline)) void app_lock_acquire(struct app_lock *l)
{
	pthread_mutex_lock(&l->m);
	while (l->held) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&l->released, &l->m, &until);
	}
	l->held = 1;
	pthread_mutex_unlock(&l->m);
}

__attribute__((noinline)) void app_lock_release(struct app_lock *l)
{
	pthread_mutex_lock(&l->m);
	l->held = 0;
	pthread_cond_broadcast(&l->released);
	pthread_mutex_unlock(&l->m);
}

__attribute__((noinline)) int next_job(void)
{
	int job;

	pthread_mutex_lock(&queue_lock);
	while (head == tail)
		pthread_cond_wait(&job_ready, &queue_lock);
	job = queue[head++ % 256];
	pthread_mutex_unlock(&queue_lock);
	return job;
}

static void submit(int job)
{
	pthread_mutex_lock(&queue_lock);
	queue[tail++ % 256] = job;
	pthread_cond_signal(&job_ready);
	pthread_mutex_unlock(&queue_lock);
}

__attribute__((noinline)) void quick_work(void)
{
	for (long i = 0; i < 200000; i++)
		sink += i;
}

/* Request paths a few calls deep, as in a real server: waits near the top of a thread are
 * its waits for work (see "How it decides"), these are in the middle of the work. */
__attribute__((noinline)) void update_account(void)
{
	app_lock_acquire(&app);
	quick_work();
	app_lock_release(&app);
}

__attribute__((noinline)) void handle_locked_request(void)
{
	fprintf(stderr, "locked tid=%d\n", gettid());
	update_account();
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void do_slow_export(void)
{
	fprintf(stderr, "export tid=%d\n", gettid());
	sleep(3);
	__asm__ volatile("" ::: "memory"); /* no tail call: the stack names this function */
}

__attribute__((noinline)) void export_report(void)
{
	do_slow_export();
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void handle_export(void)
{
	export_report();
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void serve(int job)
{
	switch (job) {
	case LOCKED:
		handle_locked_request();
		break;
	case EXPORT:
		handle_export();
		break;
	default:
		quick_work();
	}
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void *worker_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "worker");
	for (;;)
		serve(next_job());
	return NULL;
}

/* Not a tail call, and called from one place: main waits at one site whatever it does. */
__attribute__((noinline)) void pace(void)
{
	usleep(TICK_MS * 1000);
	__asm__ volatile("" ::: "memory");
}

#define TICK(ms) ((ms) / TICK_MS)

/* What main does at tick `t`; all its waiting is in pace(). The lock is released half-way
 * between two of the waiter's 1 s timeouts, so its wake-up is the release. */
__attribute__((noinline)) void step(int t)
{
	if (t == TICK(8000)) {
		app_lock_acquire(&app);
		submit(LOCKED);
	}
	if (t == TICK(11500))
		app_lock_release(&app);
	if (t == TICK(12500))
		submit(EXPORT);
	if (t < TICK(16000))
		submit(QUICK);
}

int main(void)
{
	pthread_t t;

	fprintf(stderr, "main tid=%d\n", gettid());
	for (int i = 0; i < NWORKERS; i++)
		if (pthread_create(&t, NULL, worker_main, NULL) != 0)
			return 1;
	for (int tick = 0; tick < 20 * 1000 / TICK_MS; tick++) {
		step(tick);
		pace();
	}
	return 0;
}
