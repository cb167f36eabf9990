/*
 * lock_killed: threads blocked on a mutex that is never released, until the process is killed.
 *
 * The main thread takes table_lock and keeps it; WAITERS threads named "waiter" block in
 * pthread_mutex_lock on it. Once they are blocked, main prints "ready" and sleeps. Whoever kills
 * the process (SIGKILL) wakes every waiter to die: no waiter was ever granted the lock. The
 * holder is the main thread on purpose: it lingers as a zombie until the parent reaps the
 * process, so the owner of the lock still looks alive when the waiters' wake-ups are read.
 *
 * With "gate", main first waits for a line on stdin (sent once an observer has attached), so
 * that the waits begin while it watches.
 *
 * usage: lock_killed [WAITERS] [gate]   (default 4 waiters; prints "ready" on stdout)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) void waiter_update(void)
{
	pthread_mutex_lock(&table_lock);
	pthread_mutex_unlock(&table_lock);
}

__attribute__((noinline)) void *waiter_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "waiter");
	waiter_update();
	return NULL;
}

int main(int argc, char **argv)
{
	int waiters = argc > 1 ? atoi(argv[1]) : 4;
	pthread_t t;

	if (waiters < 1 || waiters > 64)
		waiters = 4;
	if (argc > 2 && strcmp(argv[2], "gate") == 0) {
		char line[16];

		if (!fgets(line, sizeof(line), stdin))
			return 2;
	}
	pthread_mutex_lock(&table_lock);
	for (int i = 0; i < waiters; i++)
		if (pthread_create(&t, NULL, waiter_main, NULL) != 0)
			return 2;
	/* Give the waiters time to reach the futex wait. */
	usleep(200 * 1000);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
	return 0;
}
