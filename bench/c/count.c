/*
 * An LD_PRELOAD shim for `ci/bench --profile`: counts the calls of the
 * benchmark process that go to the kernel or block, without stopping the
 * process at each one as strace does (strace changes who runs when, and so
 * how often threads block). At exit it writes the totals to the file named
 * by DLM_BENCH_COUNTS.
 *
 * Seen: read and write (libdlm's device I/O), poll (the poll-mode loops of
 * case 7 and the crate's waits), clock_gettime (counted as calls: the vDSO
 * may answer one without entering the kernel), gettid, futex (Rust's
 * park/unpark and
 * every Rust lock go through libc's syscall()), sched_yield, and the
 * condition-variable calls of the C contenders and of libdlm's _wait calls
 * (glibc's own futex calls inside them are not visible: a pthread_cond_wait
 * that blocks costs one futex wait, its pthread_cond_signal one wake).
 *
 * Built by ci/bench: cc -shared -fPIC -O2 count.c -o count.so -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { C_READ, C_WRITE, C_FUTEX, C_YIELD, C_POLL, C_CLOCK, C_GETTID, C_COND_WAIT, C_COND_SIGNAL, C_N };
static const char *const names[C_N] = {
	"read", "write", "futex", "sched_yield", "poll", "clock_gettime", "gettid", "cond_wait", "cond_signal",
};
static unsigned long counts[C_N];

#define COUNT(i) __atomic_fetch_add(&counts[i], 1, __ATOMIC_RELAXED)

/* The next definition of `name` (libc's), looked up once. The condition
 * variable calls have two versions: `version` picks the current one. */
static void *resolve(void **slot, const char *name, const char *version)
{
	void *p = __atomic_load_n(slot, __ATOMIC_RELAXED);

	if (!p) {
		p = version ? dlvsym(RTLD_NEXT, name, version) : dlsym(RTLD_NEXT, name);
		__atomic_store_n(slot, p, __ATOMIC_RELAXED);
	}
	return p;
}

static void *real_read, *real_write, *real_syscall, *real_sched_yield;
static void *real_poll, *real_clock_gettime, *real_gettid;
static void *real_cond_wait, *real_cond_signal;

ssize_t read(int fd, void *buf, size_t n)
{
	ssize_t (*f)(int, void *, size_t) = resolve(&real_read, "read", NULL);

	COUNT(C_READ);
	return f(fd, buf, n);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	ssize_t (*f)(int, const void *, size_t) = resolve(&real_write, "write", NULL);

	COUNT(C_WRITE);
	return f(fd, buf, n);
}

long syscall(long nr, ...)
{
	long (*f)(long, ...) = resolve(&real_syscall, "syscall", NULL);
	va_list ap;
	long a[6];
	int i;

	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_futex)
		COUNT(C_FUTEX);
	return f(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int sched_yield(void)
{
	int (*f)(void) = resolve(&real_sched_yield, "sched_yield", NULL);

	COUNT(C_YIELD);
	return f();
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int (*f)(struct pollfd *, nfds_t, int) = resolve(&real_poll, "poll", NULL);

	COUNT(C_POLL);
	return f(fds, n, timeout);
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	int (*f)(clockid_t, struct timespec *) = resolve(&real_clock_gettime, "clock_gettime", NULL);

	COUNT(C_CLOCK);
	return f(id, ts);
}

pid_t gettid(void)
{
	pid_t (*f)(void) = resolve(&real_gettid, "gettid", NULL);

	COUNT(C_GETTID);
	return f();
}

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
	int (*f)(pthread_cond_t *, pthread_mutex_t *) =
		resolve(&real_cond_wait, "pthread_cond_wait", "GLIBC_2.3.2");

	COUNT(C_COND_WAIT);
	return f(c, m);
}

int pthread_cond_signal(pthread_cond_t *c)
{
	int (*f)(pthread_cond_t *) = resolve(&real_cond_signal, "pthread_cond_signal", "GLIBC_2.3.2");

	COUNT(C_COND_SIGNAL);
	return f(c);
}

__attribute__((destructor)) static void dump(void)
{
	const char *path = getenv("DLM_BENCH_COUNTS");
	FILE *f;
	int i;

	if (!path || !(f = fopen(path, "w")))
		return;
	for (i = 0; i < C_N; i++)
		fprintf(f, "%s %lu\n", names[i], counts[i]);
	fclose(f);
}
