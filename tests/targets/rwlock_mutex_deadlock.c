/*
 * rwlock_mutex_deadlock: a deadlock through a pthread_rwlock and a pthread mutex.
 *
 * Thread "indexer" takes index_lock (an rwlock) for writing, then 100ms later wants stats_lock
 * (a mutex) in reindex(); thread "reporter" takes stats_lock, then wants index_lock for writing in
 * publish_report(). Both block for good: the rwlock records its writer (__cur_writer), the mutex
 * its owner (__owner), so the cycle is indexer -> reporter -> indexer. main blocks in pthread_join,
 * so the process has to be killed.
 *
 * usage: rwlock_mutex_deadlock [START_DELAY_MS]   (default 0; prints "indexer tid=N" and "reporter tid=N" on stderr)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_rwlock_t index_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static long index_version, stats_version;
static int start_delay_ms;

__attribute__((noinline)) void reindex(void)
{
	pthread_rwlock_wrlock(&index_lock);
	usleep(100 * 1000); /* long enough for the reporter to take stats_lock */
	pthread_mutex_lock(&stats_lock);
	index_version++;
	stats_version++;
	pthread_mutex_unlock(&stats_lock);
	pthread_rwlock_unlock(&index_lock);
}

__attribute__((noinline)) void publish_report(void)
{
	pthread_mutex_lock(&stats_lock);
	usleep(100 * 1000);
	pthread_rwlock_wrlock(&index_lock);
	stats_version += index_version;
	pthread_rwlock_unlock(&index_lock);
	pthread_mutex_unlock(&stats_lock);
}

static void announce(const char *name)
{
	pthread_setname_np(pthread_self(), name);
	fprintf(stderr, "%s tid=%d\n", name, gettid());
	usleep(start_delay_ms * 1000);
}

__attribute__((noinline)) void *indexer_main(void *arg)
{
	(void)arg;
	announce("indexer");
	reindex();
	return NULL;
}

__attribute__((noinline)) void *reporter_main(void *arg)
{
	(void)arg;
	announce("reporter");
	publish_report();
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t indexer, reporter;

	start_delay_ms = argc > 1 ? atoi(argv[1]) : 0;
	if (pthread_create(&indexer, NULL, indexer_main, NULL) != 0 ||
	    pthread_create(&reporter, NULL, reporter_main, NULL) != 0)
		return 2;
	pthread_join(indexer, NULL);
	pthread_join(reporter, NULL);
	return 0;
}
