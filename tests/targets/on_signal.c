/*
 * on_signal: stays idle until told to misbehave, so that a test can tamper with its file first.
 *
 * The first SIGUSR1 makes thread "worker" wait ~300ms (in worker_update, called from
 * worker_main) for a mutex thread "maintenance" holds (in maintenance_compact, as in
 * lock_hold.c); the second does the same with worker_update called from retry_main, so that
 * its stack has code addresses not symbolized before; the third starts an AB/BA deadlock
 * between threads "alice" (transfer_a_to_b) and "bob" (transfer_b_to_a). It never exits on
 * its own.
 *
 * usage: on_signal   (prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static volatile long table_version, balance_a, balance_b;

__attribute__((noinline)) void maintenance_compact(void)
{
	pthread_mutex_lock(&table_lock);
	usleep(300 * 1000);
	table_version++;
	pthread_mutex_unlock(&table_lock);
	table_version++;
}

__attribute__((noinline)) void *maintenance_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "maintenance");
	maintenance_compact();
	return NULL;
}

__attribute__((noinline)) void worker_update(void)
{
	pthread_mutex_lock(&table_lock);
	table_version++;
	pthread_mutex_unlock(&table_lock);
	table_version++;
}

__attribute__((noinline)) void *worker_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "worker");
	usleep(50 * 1000); /* maintenance takes the lock first */
	worker_update();
	return NULL;
}

__attribute__((noinline)) void *retry_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "worker");
	usleep(50 * 1000);
	worker_update();
	table_version++;
	return NULL;
}

static void contend(void *(*worker)(void *))
{
	pthread_t a, b;

	if (pthread_create(&a, NULL, maintenance_main, NULL) != 0 ||
	    pthread_create(&b, NULL, worker, NULL) != 0)
		exit(2);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
}

__attribute__((noinline)) void transfer_a_to_b(void)
{
	pthread_mutex_lock(&lock_a);
	usleep(100 * 1000);
	pthread_mutex_lock(&lock_b);
	balance_a--;
	pthread_mutex_unlock(&lock_b);
	pthread_mutex_unlock(&lock_a);
}

__attribute__((noinline)) void transfer_b_to_a(void)
{
	pthread_mutex_lock(&lock_b);
	usleep(100 * 1000);
	pthread_mutex_lock(&lock_a);
	balance_b--;
	pthread_mutex_unlock(&lock_a);
	pthread_mutex_unlock(&lock_b);
}

__attribute__((noinline)) void *alice_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "alice");
	transfer_a_to_b();
	return NULL;
}

__attribute__((noinline)) void *bob_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "bob");
	transfer_b_to_a();
	return NULL;
}

int main(void)
{
	sigset_t set;
	int sig;
	pthread_t a, b;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL); /* inherited by the threads: only sigwait takes it */

	sigwait(&set, &sig);
	contend(worker_main);
	sigwait(&set, &sig);
	contend(retry_main);

	sigwait(&set, &sig);
	if (pthread_create(&a, NULL, alice_main, NULL) != 0 ||
	    pthread_create(&b, NULL, bob_main, NULL) != 0)
		return 2;
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	return 0;
}
