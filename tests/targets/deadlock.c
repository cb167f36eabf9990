/*
 * deadlock: the textbook AB/BA deadlock.
 *
 * Thread "alice" takes lock_a then, 100ms later, lock_b in transfer_a_to_b(); thread "bob" takes
 * lock_b then lock_a in transfer_b_to_a(). Both end up blocked for good; main blocks in
 * pthread_join forever, so the process has to be killed.
 *
 * usage: deadlock [START_DELAY_MS]   (default 0: the transfers start at once; prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static long balance_a = 100, balance_b = 100;
static int start_delay_ms;

__attribute__((noinline)) void transfer_a_to_b(long amount)
{
	pthread_mutex_lock(&lock_a);
	usleep(100 * 1000); /* stands for validating the debit: long enough for bob to take lock_b */
	pthread_mutex_lock(&lock_b);
	balance_a -= amount;
	balance_b += amount;
	pthread_mutex_unlock(&lock_b);
	pthread_mutex_unlock(&lock_a);
}

__attribute__((noinline)) void transfer_b_to_a(long amount)
{
	pthread_mutex_lock(&lock_b);
	usleep(100 * 1000);
	pthread_mutex_lock(&lock_a);
	balance_b -= amount;
	balance_a += amount;
	pthread_mutex_unlock(&lock_a);
	pthread_mutex_unlock(&lock_b);
}

__attribute__((noinline)) void *alice_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "alice");
	usleep(start_delay_ms * 1000);
	transfer_a_to_b(10);
	return NULL;
}

__attribute__((noinline)) void *bob_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "bob");
	usleep(start_delay_ms * 1000);
	transfer_b_to_a(20);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t alice, bob;

	start_delay_ms = argc > 1 ? atoi(argv[1]) : 0;
	if (pthread_create(&alice, NULL, alice_main, NULL) != 0 ||
	    pthread_create(&bob, NULL, bob_main, NULL) != 0)
		return 2;
	pthread_join(alice, NULL);
	pthread_join(bob, NULL);
	return 0;
}
