/*
 * crash: a thread dereferences NULL and the process dies of SIGSEGV.
 *
 * Thread "parser" calls parse_record() on a record that was never loaded; bad_pointer() reads
 * through the NULL pointer after ~200ms. Core dumps are disabled so a test run leaves none behind.
 *
 * usage: crash [--print-tid]   (--print-tid prints "bad_pointer tid=N" on stdout first)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct record {
	int length;
	char data[64];
};

/* volatile: the compiler must not see that it stays NULL and replace the read with a trap. */
static struct record *volatile loaded_record;
static int print_tid;

__attribute__((noinline)) int bad_pointer(struct record *r)
{
	if (print_tid) {
		printf("bad_pointer tid=%ld\n", (long)syscall(SYS_gettid));
		fflush(stdout);
	}
	return r->length;
}

__attribute__((noinline)) int parse_record(void)
{
	usleep(200 * 1000);
	return bad_pointer(loaded_record) + 1;
}

__attribute__((noinline)) void *parser_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "parser");
	return (void *)(long)parse_record();
}

int main(int argc, char **argv)
{
	struct rlimit no_core = { 0, 0 };
	pthread_t parser;

	print_tid = argc > 1 && strcmp(argv[1], "--print-tid") == 0;
	setrlimit(RLIMIT_CORE, &no_core);
	if (pthread_create(&parser, NULL, parser_main, NULL) != 0)
		return 2;
	pthread_join(parser, NULL);
	return 0;
}
