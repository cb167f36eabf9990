/*
 * demo: a small "service" with three classic concurrency bugs, for `cargo xtask demo`.
 *
 * 1. A lock held too long: "flusher" keeps cache_lock across a slow write (~300ms) every ~1s,
 *    so the request handlers "handler-1" and "handler-2" wait for it.
 * 2. A deadlock: "ledger" posts transactions taking ledger_lock then account_lock; after ~2s
 *    "audit" starts reconciling, taking account_lock then ledger_lock. Both block for good.
 * 3. A silent thread death: "reaper" expires sessions and, on a corrupt session (~1s in),
 *    takes an error path that calls pthread_exit(): nothing is logged, sessions pile up.
 *
 * The process runs ~6s and then exits 0 without joining anyone (the deadlocked threads could
 * not be joined anyway).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUN_SECONDS 6
#define NSESSIONS 32

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t ledger_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t account_lock = PTHREAD_MUTEX_INITIALIZER;

static char cache[4096];
static volatile long cache_hits;
static long ledger_entries, account_total;
static volatile long sessions_reaped;

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long start_ms;

/* ---- 1. lock held across slow I/O ---------------------------------------------------------- */

__attribute__((noinline)) void write_snapshot(int fd)
{
	if (write(fd, cache, sizeof(cache)) < 0)
		return;
	usleep(300 * 1000); /* stands for a slow disk: fsync on a busy device */
}

__attribute__((noinline)) void flush_cache_to_disk(int fd)
{
	pthread_mutex_lock(&cache_lock);
	write_snapshot(fd); /* the bug: the copy should be taken under the lock, the write outside */
	pthread_mutex_unlock(&cache_lock);
	cache_hits = 0;
}

__attribute__((noinline)) void *flusher_main(void *arg)
{
	int fd = open("/dev/null", O_WRONLY);

	(void)arg;
	pthread_setname_np(pthread_self(), "flusher");
	for (;;) {
		usleep(700 * 1000);
		flush_cache_to_disk(fd);
	}
	return NULL;
}

__attribute__((noinline)) int handle_request(int key)
{
	int value;

	pthread_mutex_lock(&cache_lock);
	value = cache[key % sizeof(cache)]++;
	pthread_mutex_unlock(&cache_lock);
	cache_hits++;
	return value;
}

__attribute__((noinline)) void *handler_main(void *arg)
{
	char name[16];
	int key = 0;

	snprintf(name, sizeof(name), "handler-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		handle_request(key++);
		usleep(20 * 1000);
	}
	return NULL;
}

/* ---- 2. lock-order inversion ------------------------------------------------------------------ */

__attribute__((noinline)) void post_transaction(long amount)
{
	pthread_mutex_lock(&ledger_lock);
	ledger_entries++;
	usleep(50 * 1000); /* stands for writing the journal entry */
	pthread_mutex_lock(&account_lock);
	account_total += amount;
	pthread_mutex_unlock(&account_lock);
	pthread_mutex_unlock(&ledger_lock);
}

__attribute__((noinline)) void *ledger_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "ledger");
	for (long i = 0;; i++) {
		post_transaction(i % 7);
		usleep(10 * 1000);
	}
	return NULL;
}

__attribute__((noinline)) long audit_accounts(void)
{
	long total, entries;

	pthread_mutex_lock(&account_lock);
	total = account_total;
	usleep(50 * 1000); /* stands for summing the accounts */
	pthread_mutex_lock(&ledger_lock); /* the bug: the opposite order of post_transaction */
	entries = ledger_entries;
	pthread_mutex_unlock(&ledger_lock);
	pthread_mutex_unlock(&account_lock);
	return total - entries;
}

__attribute__((noinline)) void *audit_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "audit");
	usleep(2000 * 1000); /* the nightly audit starts a little later */
	for (;;) {
		audit_accounts();
		usleep(100 * 1000);
	}
	return NULL;
}

/* ---- 3. a worker that quietly dies ------------------------------------------------------------ */

struct session {
	long expires_ms; /* negative: corrupt */
	int live;
};

static struct session sessions[NSESSIONS];

__attribute__((noinline)) void reap_expired_sessions(long now)
{
	for (int i = 0; i < NSESSIONS; i++) {
		struct session *s = &sessions[i];

		if (!s->live)
			continue;
		if (s->expires_ms < 0)
			pthread_exit(NULL); /* the bug: "cannot happen", so the thread just stops */
		if (s->expires_ms <= now) {
			s->live = 0;
			sessions_reaped++;
		}
	}
}

__attribute__((noinline)) void *reaper_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "reaper");
	for (;;) {
		long elapsed = now_ms() - start_ms;

		/* A session with a corrupt expiry shows up about a second in. */
		if (elapsed >= 1000)
			sessions[NSESSIONS - 1] = (struct session){ .expires_ms = -1, .live = 1 };
		reap_expired_sessions(elapsed);
		usleep(200 * 1000);
	}
	return NULL;
}

int main(void)
{
	void *(*starts[])(void *) = { flusher_main, handler_main, handler_main,
				      ledger_main,  audit_main,   reaper_main };
	long args[] = { 0, 1, 2, 0, 0, 0 };
	pthread_t t;

	start_ms = now_ms();
	for (int i = 0; i < NSESSIONS - 1; i++)
		sessions[i] = (struct session){ .expires_ms = 400L * i, .live = 1 };
	fprintf(stderr, "demo: running %ds (pid %d): flusher holds cache_lock ~300ms every second, "
			"ledger and audit deadlock after ~2s, reaper dies after ~1s\n",
		RUN_SECONDS, (int)getpid());
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
		if (pthread_create(&t, NULL, starts[i], (void *)args[i]) != 0)
			return 2;
	for (int i = 0; i < RUN_SECONDS; i++)
		sleep(1);
	fprintf(stderr, "demo: done\n");
	exit(0);
}
