/*
 * futex_page_edge: a futex word in the last four bytes of a page whose next page is
 * inaccessible (PROT_NONE).
 *
 * The kernel reads only the 4-byte word, so FUTEX_WAIT sleeps as usual; observer's probe reads
 * 12 bytes there (the word and a glibc mutex's owner field after it) to find a lock owner, and
 * that read fails: the condition `observer --kernel-log` reports as "futex words ... unreadable".
 * Main waits ROUNDS times for WAIT_MS each (nobody wakes it: each wait times out), then exits 0.
 *
 * usage: futex_page_edge [ROUNDS [WAIT_MS]]   (default 10 x 50 ms; prints the word's address)
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) void wait_at_page_edge(uint32_t *word, long wait_ms)
{
	struct timespec timeout = { .tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000 };

	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, *word, &timeout, NULL, 0);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 10;
	long wait_ms = argc > 2 ? atol(argv[2]) : 50;
	long page = sysconf(_SC_PAGESIZE);
	char *pages = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (pages == MAP_FAILED || mprotect(pages + page, page, PROT_NONE) != 0) {
		perror("futex_page_edge: mmap");
		return 1;
	}
	uint32_t *word = (uint32_t *)(pages + page - sizeof(uint32_t));
	*word = 1;
	printf("word at %p\n", (void *)word);
	fflush(stdout);
	for (int i = 0; i < rounds; i++)
		wait_at_page_edge(word, wait_ms);
	return 0;
}
