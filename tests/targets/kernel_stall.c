/*
 * kernel_stall: a thread stuck inside the kernel in uninterruptible sleep (D state).
 *
 * Thread "forker" calls vfork(); the child sleeps CHILD_SECONDS before it exits, and until
 * then the kernel keeps the parent thread in TASK_KILLABLE (D state) in kernel_clone's wait
 * for the vfork to be done. Thread "sleeper" sleeps just as long in nanosleep(), an
 * interruptible sleep (S state), which is no stall.
 *
 * vfork is issued with an inline `syscall` from forker's own function, not glibc's vfork():
 * glibc pops its return address into %rdi for the duration of the call (the child would
 * otherwise overwrite it), which leaves nothing on the stack to unwind to the caller from.
 * The child only issues syscalls (no calls, no stack writes) before _exit, as vfork requires.
 *
 * usage: kernel_stall [CHILD_SECONDS]   (default 6; prints "forker tid=N" and "sleeper tid=N")
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct timespec nap;

__attribute__((noinline)) void forker_waits_for_vfork_child(void)
{
	long pid = SYS_vfork;
	__asm__ volatile("syscall" : "+a"(pid) : : "rcx", "r11", "memory");
	if (pid == 0) {
		long rc = SYS_nanosleep;
		__asm__ volatile("syscall" : "+a"(rc) : "D"(&nap), "S"(0L) : "rcx", "r11", "memory");
		rc = SYS_exit;
		__asm__ volatile("syscall" : "+a"(rc) : "D"(0L) : "rcx", "r11", "memory");
		__builtin_unreachable();
	}
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
}

static void *forker_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "forker");
	fprintf(stderr, "forker tid=%ld\n", (long)syscall(SYS_gettid));
	/* Let the observer see the process before the wait starts. */
	usleep(500 * 1000);
	forker_waits_for_vfork_child();
	return NULL;
}

__attribute__((noinline)) void sleeper_naps(void)
{
	struct timespec ts = nap;
	nanosleep(&ts, NULL);
}

static void *sleeper_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "sleeper");
	fprintf(stderr, "sleeper tid=%ld\n", (long)syscall(SYS_gettid));
	usleep(500 * 1000);
	sleeper_naps();
	return NULL;
}

int main(int argc, char **argv)
{
	nap.tv_sec = argc > 1 ? atoi(argv[1]) : 6;
	pthread_t forker, sleeper;
	pthread_create(&forker, NULL, forker_main, NULL);
	pthread_create(&sleeper, NULL, sleeper_main, NULL);
	pthread_join(forker, NULL);
	pthread_join(sleeper, NULL);
	return 0;
}
