/*
 * sem_hold: a POSIX semaphore used as a binary lock, held ~300ms at a time.
 *
 * Thread "flusher" takes journal_sem (initial value 1) every ~700ms in flush_journal() and keeps
 * it ~300ms; "writer-1".."writer-3" take it every few milliseconds in append_record() and wait in
 * sem_wait meanwhile. A semaphore records no owner: only the call chain says it is a lock.
 *
 * usage: sem_hold [SECONDS]   (default 5; prints "ROLE tid=N" lines on stderr, exits 0)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NWRITERS 3

static sem_t journal_sem;
static long journal_len;
static volatile long flushes;

__attribute__((noinline)) void flush_journal(void)
{
	while (sem_wait(&journal_sem) != 0)
		;
	usleep(300 * 1000); /* stands for writing the journal out */
	journal_len = 0;
	sem_post(&journal_sem);
	flushes++;
}

__attribute__((noinline)) void *flusher_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "flusher");
	fprintf(stderr, "flusher tid=%d\n", gettid());
	for (;;) {
		usleep(700 * 1000);
		flush_journal();
	}
	return NULL;
}

__attribute__((noinline)) void append_record(void)
{
	while (sem_wait(&journal_sem) != 0)
		;
	journal_len++;
	sem_post(&journal_sem);
}

__attribute__((noinline)) void *writer_main(void *arg)
{
	char name[16];

	snprintf(name, sizeof(name), "writer-%ld", (long)arg);
	pthread_setname_np(pthread_self(), name);
	fprintf(stderr, "%s tid=%d\n", name, gettid());
	for (;;) {
		append_record();
		usleep(5 * 1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	pthread_t t;

	if (sem_init(&journal_sem, 0, 1) != 0)
		return 2;
	for (long i = 1; i <= NWRITERS; i++)
		if (pthread_create(&t, NULL, writer_main, (void *)i) != 0)
			return 2;
	if (pthread_create(&t, NULL, flusher_main, NULL) != 0)
		return 2;
	for (int i = 0; i < seconds; i++)
		sleep(1);
	return 0;
}
