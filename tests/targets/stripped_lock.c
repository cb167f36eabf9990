/*
 * stripped_lock: a lock wait in a function whose name exists only in debug information, for
 * the test that strips this binary and places its debug file where distributions put it.
 *
 * Thread "poster" calls ledger_post_entry() every few milliseconds; thread "auditor" holds
 * ledger_lock for ~300 ms every ~0.7 s, so ledger_post_entry() waits for it.
 *
 * usage: stripped_lock [SECONDS]   (default 3; exits 0 afterwards, prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t ledger_lock = PTHREAD_MUTEX_INITIALIZER;
static long ledger_total;
static volatile long audits;
static volatile long posts;

__attribute__((noinline)) void ledger_audit_slowly(void)
{
	pthread_mutex_lock(&ledger_lock);
	usleep(300 * 1000);
	ledger_total ^= 1;
	pthread_mutex_unlock(&ledger_lock);
	audits++;
}

__attribute__((noinline)) void *auditor_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "auditor");
	for (;;) {
		usleep(400 * 1000);
		ledger_audit_slowly();
	}
	return NULL;
}

__attribute__((noinline)) long ledger_post_entry(long amount)
{
	long total;

	pthread_mutex_lock(&ledger_lock);
	ledger_total += amount;
	total = ledger_total;
	pthread_mutex_unlock(&ledger_lock);
	posts++;
	return total;
}

__attribute__((noinline)) void *poster_main(void *arg)
{
	long last = 0;

	(void)arg;
	pthread_setname_np(pthread_self(), "poster");
	for (;;) {
		last = ledger_post_entry(2);
		usleep(5 * 1000);
	}
	return (void *)last;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 3;
	pthread_t auditor, poster;

	if (pthread_create(&poster, NULL, poster_main, NULL) != 0 ||
	    pthread_create(&auditor, NULL, auditor_main, NULL) != 0)
		return 2;
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
