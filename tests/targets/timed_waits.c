/*
 * timed_waits: a thread whose waits are all ended by a timer, in code without frame pointers.
 *
 * Thread "exporter" runs do_slow_export(), which sleeps 20 ms at a time and formats text into a
 * heap buffer between sleeps, for SECONDS; then the process exits 0. Code built without frame
 * pointers uses %rbp for data; here it holds a pointer to that text while the thread sleeps (set
 * explicitly, so that it does not depend on the compiler's register choice), so a frame-pointer
 * walk of the sleeping thread reads text as return addresses ("rver 127" =
 * 0x3732312072657672), different text at each sleep.
 *
 * usage: timed_waits [SECONDS]   (default 3; prints nothing)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

static volatile long exported;

/* nanosleep(2) with %rbp = data, as optimized code without frame pointers may leave it. */
static inline void sleep_holding(const struct timespec *ts, char *data)
{
	register char *bp asm("rbp") = data;
	long ret;

	asm volatile("syscall"
		     : "=a"(ret)
		     : "0"((long)SYS_nanosleep), "D"(ts), "S"(0L), "r"(bp)
		     : "rcx", "r11", "memory");
	(void)ret;
}

__attribute__((noinline)) void do_slow_export(char *buf, long rounds)
{
	for (long i = 0; i < rounds; i++) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000 * 1000 };
		char *line = buf + (i % 4) * 32;

		snprintf(line, 32, "server 127.0.0.%ld:%ld", i % 200, i);
		sleep_holding(&ts, line);
		exported += strlen(line);
	}
}

__attribute__((noinline)) void *exporter_main(void *arg)
{
	char *buf = malloc(256);

	pthread_setname_np(pthread_self(), "exporter");
	memset(buf, 'x', 256);
	do_slow_export(buf, (long)arg * 50);
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	long seconds = argc > 1 ? atol(argv[1]) : 3;
	pthread_t t;

	if (pthread_create(&t, NULL, exporter_main, (void *)seconds) != 0)
		return 2;
	pthread_join(t, NULL);
	return 0;
}
