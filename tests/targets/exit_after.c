/*
 * exit_after: does nothing for a while, then exits with a given code.
 *
 * A single-threaded process with a known end: the test can watch it, see it exit, and then
 * check what observer does next (stop, and never follow a new process that gets the same pid).
 *
 * usage: exit_after [MILLISECONDS] [CODE]   (defaults 1000 and 7)
 */
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 1000;
	int code = argc > 2 ? atoi(argv[2]) : 7;
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	return code;
}
