/*
 * exit_code: a helper thread ends the whole process with exit(3).
 *
 * Thread "poller" polls, thread "validator" checks the configuration and, after ~300ms, calls
 * fatal_error(), which calls exit(3) from that thread while main waits in pthread_join.
 *
 * usage: exit_code [--print-tid]   (--print-tid prints "fatal_error tid=N" on stdout first)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int print_tid;
static volatile long polls;

__attribute__((noinline)) void fatal_error(const char *why)
{
	if (print_tid) {
		printf("fatal_error tid=%ld\n", (long)syscall(SYS_gettid));
		fflush(stdout);
	}
	(void)why;
	exit(3);
}

__attribute__((noinline)) void validate_config(void)
{
	usleep(300 * 1000); /* stands for reading and parsing the configuration */
	fatal_error("invalid configuration");
}

__attribute__((noinline)) void *validator_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "validator");
	validate_config();
	return NULL;
}

__attribute__((noinline)) void *poller_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "poller");
	for (;;) {
		polls++;
		usleep(10 * 1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t poller, validator;

	print_tid = argc > 1 && strcmp(argv[1], "--print-tid") == 0;
	if (pthread_create(&poller, NULL, poller_main, NULL) != 0 ||
	    pthread_create(&validator, NULL, validator_main, NULL) != 0)
		return 2;
	pthread_join(validator, NULL);
	pthread_join(poller, NULL);
	return 0;
}
