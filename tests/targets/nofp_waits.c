/*
 * nofp_waits: waits that something other than a thread of this process ends, in code built
 * without frame pointers (-O2 -fomit-frame-pointer, as distributions ship it).
 *
 * Six threads, each waiting ROUNDS times for about MS milliseconds (300 ms) in a function of its
 * own:
 *   "exporter"  do_slow_export():          nanosleep MS (a timer ends it);
 *   "reader"    poll_timeout_in_reader():  poll() on a pipe nobody writes, MS timeout;
 *   "acker"     wait_for_ack():            pthread_cond_timedwait() that times out after MS;
 *   "reloader"  wait_for_reload():         read() on a pipe nobody writes, broken after MS
 *               by SIGUSR1 sent by another process (a child forked for that, which sleeps in
 *               send_reload_signal() and then tgkill()s the waiting thread).
 *   "poller"    epoll_timeout_in_loop():   epoll_wait() on that pipe, MS timeout;
 *   "spawner"   spawn_and_wait():          vfork(); the child sleeps MS and exits, and until then
 *               the kernel keeps the thread in uninterruptible sleep (D state), ended by the
 *               child, another process.
 * And "ticker", in tick_with_callback(): 20 ms sleeps (short waits, summed in the
 * kernel under their frame-pointer stack) with %rbp pointing at a struct whose second word is
 * a function pointer, export_done_callback: a frame-pointer walk takes that code address for
 * a return address, but no call precedes it.
 * %rbp holds data in the waiting functions (a pointer to text, set explicitly so that it does
 * not depend on the compiler's register choice): a frame-pointer walk of the waiting thread
 * reads that text as return addresses.
 * When all are done the process exits 0 without joining (no thread exits to report).
 *
 * usage: nofp_waits [ROUNDS [MS]]   (defaults 2 and 300, MS below 1000; prints "NAME tid=N" for
 * each thread)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long wait_ms = 300;

static long rounds = 2;
static volatile int done;
static volatile long work;
static pthread_mutex_t ack_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ack_cond = PTHREAD_COND_INITIALIZER;
static int idle_pipe[2];
static int epoll_fd;

/* Text that a frame-pointer walk would read as return addresses ("rver 127" and friends). */
static char junk[6][64];

/* Puts a pointer to text in %rbp for the duration of the call to fn(arg): a function built
 * without frame pointers may leave anything there. */
#define WITH_DATA_IN_RBP(data, expr)                                                      \
	({                                                                                 \
		register char *bp_ asm("rbp") = (data);                                    \
		asm volatile("" : "+r"(bp_));                                              \
		long r_ = (long)(expr);                                                    \
		asm volatile("" : : "r"(bp_));                                             \
		r_;                                                                        \
	})

__attribute__((noinline)) void export_done_callback(long n)
{
	work += n;
}

/* A callback hook, as event libraries keep them: { context, function }. */
static struct hook {
	char *ctx;
	void (*fn)(long);
} hook = { junk[0], export_done_callback };

__attribute__((noinline)) long tick_with_callback(long i)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000L * 1000L };
	long r = WITH_DATA_IN_RBP((char *)&hook, nanosleep(&ts, NULL));

	hook.fn(i);
	return r;
}

static char *text_for(int which, long i)
{
	snprintf(junk[which], sizeof junk[which], "server 127.0.0.%ld:%ld", i % 200, i);
	return junk[which];
}

__attribute__((noinline)) long do_slow_export(long i)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = wait_ms * 1000L * 1000L };
	long r = WITH_DATA_IN_RBP(text_for(0, i), nanosleep(&ts, NULL));

	work += strlen(junk[0]);
	return r;
}

__attribute__((noinline)) long poll_timeout_in_reader(long i)
{
	struct pollfd p = { .fd = idle_pipe[0], .events = POLLIN };
	long r = WITH_DATA_IN_RBP(text_for(1, i), poll(&p, 1, (int)wait_ms));

	work += r + strlen(junk[1]);
	return r;
}

__attribute__((noinline)) long wait_for_ack(long i)
{
	struct timespec deadline;
	long r;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_nsec += wait_ms * 1000L * 1000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ack_lock);
	r = WITH_DATA_IN_RBP(text_for(2, i),
			     pthread_cond_timedwait(&ack_cond, &ack_lock, &deadline));
	pthread_mutex_unlock(&ack_lock);
	work += r + strlen(junk[2]);
	return r;
}

__attribute__((noinline)) long epoll_timeout_in_loop(long i)
{
	struct epoll_event ev;
	long r = WITH_DATA_IN_RBP(text_for(4, i), epoll_wait(epoll_fd, &ev, 1, (int)wait_ms));

	work += r + strlen(junk[4]);
	return r;
}

/* vfork with an inline `syscall`, not glibc's vfork() (which keeps its return address in a
 * register for the call, leaving nothing on the stack to unwind to the caller from); the
 * child only issues syscalls before _exit, as vfork requires. */
__attribute__((noinline)) long spawn_and_wait(long i)
{
	static struct timespec nap;
	long pid = SYS_vfork;

	nap.tv_nsec = wait_ms * 1000L * 1000L;
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
	work += i;
	return pid;
}

/* In the child: nothing but async-signal-safe calls (the parent has threads). */
__attribute__((noinline)) void send_reload_signal(pid_t pid, pid_t tid)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = wait_ms * 1000L * 1000L };

	nanosleep(&ts, NULL);
	syscall(SYS_tgkill, pid, tid, SIGUSR1);
	_exit(0);
}

__attribute__((noinline)) long wait_for_reload(long i)
{
	char c;
	pid_t pid = getpid(), tid = gettid();
	pid_t child = fork();
	long r;

	if (child == 0)
		send_reload_signal(pid, tid);
	r = WITH_DATA_IN_RBP(text_for(3, i), read(idle_pipe[0], &c, 1));
	work += r + (errno == EINTR);
	if (child > 0)
		waitpid(child, NULL, 0);
	return r;
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void *run(void *arg)
{
	long which = (long)arg;
	static const char *names[] = { "exporter", "reader",  "acker",  "reloader",
				       "ticker",   "poller", "spawner" };

	pthread_setname_np(pthread_self(), names[which]);
	printf("%s tid=%d\n", names[which], (int)gettid());
	fflush(stdout);
	for (long i = 0; i < rounds; i++) {
		switch (which) {
		case 0: do_slow_export(i); break;
		case 1: poll_timeout_in_reader(i); break;
		case 2: wait_for_ack(i); break;
		case 3: wait_for_reload(i); break;
		case 4:
			for (long j = 0; j < wait_ms / 20; j++)
				tick_with_callback(j);
			break;
		case 5: epoll_timeout_in_loop(i); break;
		case 6: spawn_and_wait(i); break;
		}
		/* A pause between waits, so that each round is its own wait. */
		for (volatile int spin = 0; spin < 1000000; spin++)
			;
	}
	__atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	pthread_t t;

	if (argc > 1)
		rounds = atol(argv[1]);
	if (argc > 2)
		wait_ms = atol(argv[2]);
	if (pipe(idle_pipe) != 0)
		return 2;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1; /* no SA_RESTART: the signal breaks the read */
	sigaction(SIGUSR1, &sa, NULL);
	epoll_fd = epoll_create1(0);
	{
		struct epoll_event ev = { .events = EPOLLIN };
		if (epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, idle_pipe[0], &ev) != 0)
			return 2;
	}
	for (long i = 0; i < 7; i++)
		if (pthread_create(&t, NULL, run, (void *)i) != 0)
			return 2;
	while (__atomic_load_n(&done, __ATOMIC_SEQ_CST) < 7) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	/* Stay a moment after the last wait: this target tests stacks, not what observer reads
	 * of a process in its last milliseconds (a last wait's event was once missed there). */
	{
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 300 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	exit(0);
}
