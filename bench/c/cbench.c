/*
 * The C contenders of the dlm-bench benchmark: raw libdlm, threaded library
 * (-D_REENTRANT, -ldlm -lpthread), with the timing loops in C so that no
 * Rust code runs while a C contender is timed.
 *
 * Two C architectures are measured:
 *   - "ast": dlm_ls_lock / dlm_ls_unlock with libdlm's AST thread
 *     (dlm_ls_pthread_init) and a completion AST that signals a pthread
 *     condition variable: the architecture of the Rust crate, in C.
 *   - "wait": libdlm's own synchronous calls, dlm_ls_lock_wait and
 *     dlm_ls_unlock_wait (which use the same AST thread internally).
 *
 * Every timing function returns the elapsed time in nanoseconds
 * (CLOCK_MONOTONIC, the clock Rust's Instant reads), or a negative value
 * on failure: -errno of the failed call, or -(1000000 + status) when a
 * completion carried an unexpected status.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libdlm.h>

#define BAD_STATUS(st) (-(1000000 + (int64_t)(st)))

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t fail_errno(void)
{
	return errno ? -(int64_t)errno : -1;
}

/*
 * One waiting thread's completion and blocking-AST state. The waiters are
 * static and never destroyed: an AST function may still be returning from
 * pthread_cond_signal when its waiter has already seen `done` and moved
 * on, so a waiter must outlive every AST that can name it (the Rust crate
 * gets the same guarantee from the Arc it clones in its AST).
 * Slot 0 serves single-threaded cases, slots 1 and 2 the hand-off threads.
 */
struct waiter {
	pthread_mutex_t m;
	pthread_cond_t c;
	int done;
	int bast;
	struct dlm_lksb lksb;
};

#define WAITER_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, { 0, 0, 0, NULL } }
static struct waiter waiters[3] = { WAITER_INIT, WAITER_INIT, WAITER_INIT };

/*
 * How the AST functions wake the waiter: 0 (the default) signals after
 * unlocking the mutex, so that a waiter woken at once (one CPU: the
 * woken thread often preempts libdlm's thread) finds the mutex free; 1
 * signals while holding it, as libdlm's own sync_ast_routine does, and
 * the woken waiter then blocks again on the mutex until libdlm's thread
 * releases it. Set between timed calls only.
 */
static int signal_locked;

void cb_set_signal_locked(int locked)
{
	signal_locked = locked;
}

static struct waiter *waiter_get(int slot)
{
	struct waiter *w = &waiters[slot];

	pthread_mutex_lock(&w->m);
	w->done = 0;
	w->bast = 0;
	memset(&w->lksb, 0, sizeof(w->lksb));
	pthread_mutex_unlock(&w->m);
	return w;
}

static void wake(struct waiter *w, int *flag)
{
	pthread_mutex_lock(&w->m);
	*flag = 1;
	if (signal_locked) {
		pthread_cond_signal(&w->c);
		pthread_mutex_unlock(&w->m);
	} else {
		pthread_mutex_unlock(&w->m);
		pthread_cond_signal(&w->c);
	}
}

/* The completion AST: runs on libdlm's thread, wakes the waiter. */
static void ast_fn(void *arg)
{
	struct waiter *w = arg;

	wake(w, &w->done);
}

/* The blocking AST: runs on libdlm's thread, tells the holder. */
static void bast_fn(void *arg)
{
	struct waiter *w = arg;

	wake(w, &w->bast);
}

/* Waits for the completion; returns its sb_status. */
static int wait_done(struct waiter *w)
{
	int st;

	pthread_mutex_lock(&w->m);
	while (!w->done)
		pthread_cond_wait(&w->c, &w->m);
	w->done = 0;
	st = w->lksb.sb_status;
	pthread_mutex_unlock(&w->m);
	return st;
}

static void wait_bast(struct waiter *w)
{
	pthread_mutex_lock(&w->m);
	while (!w->bast)
		pthread_cond_wait(&w->c, &w->m);
	w->bast = 0;
	pthread_mutex_unlock(&w->m);
}

/* ---- the "ast" architecture: one request, one wait ---- */

static int64_t ast_lock(dlm_lshandle_t ls, struct waiter *w, uint32_t mode, uint32_t flags,
			const char *name, unsigned int len, int with_bast)
{
	int st;

	if (dlm_ls_lock(ls, mode, &w->lksb, flags, flags & LKF_CONVERT ? NULL : name,
			flags & LKF_CONVERT ? 0 : len, 0, ast_fn, w,
			with_bast ? bast_fn : NULL, NULL))
		return fail_errno();
	st = wait_done(w);
	return st;
}

static int64_t ast_unlock(dlm_lshandle_t ls, struct waiter *w)
{
	int st;

	if (dlm_ls_unlock(ls, w->lksb.sb_lkid, 0, &w->lksb, w))
		return fail_errno();
	st = wait_done(w);
	return st == EUNLOCK ? 0 : BAD_STATUS(st);
}

/* ---- the "wait" architecture: libdlm's synchronous calls ---- */

static int64_t sync_lock(dlm_lshandle_t ls, struct dlm_lksb *lksb, uint32_t mode, uint32_t flags,
			 const char *name, unsigned int len, struct waiter *bast_to)
{
	if (dlm_ls_lock_wait(ls, mode, lksb, flags, flags & LKF_CONVERT ? NULL : name,
			     flags & LKF_CONVERT ? 0 : len, 0, bast_to,
			     bast_to ? bast_fn : NULL, NULL))
		return fail_errno();
	return lksb->sb_status;
}

static int64_t sync_unlock(dlm_lshandle_t ls, struct dlm_lksb *lksb)
{
	if (dlm_ls_unlock_wait(ls, lksb->sb_lkid, 0, lksb))
		return fail_errno();
	return lksb->sb_status == EUNLOCK ? 0 : BAD_STATUS(lksb->sb_status);
}

/* ---- lockspace handles ---- */

/* Opens the existing lockspace `name` with its own AST thread. */
void *cb_open(const char *name)
{
	dlm_lshandle_t ls = dlm_open_lockspace(name);

	if (!ls)
		return NULL;
	if (dlm_ls_pthread_init(ls)) {
		dlm_close_lockspace(ls);
		return NULL;
	}
	return ls;
}

void cb_close(void *ls)
{
	dlm_close_lockspace(ls);
}

/* Process heap in use, as glibc's malloc counts it (every arena). */
uint64_t cb_heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/* Context switches of the whole process so far: voluntary, involuntary. */
void cb_context_switches(uint64_t *voluntary, uint64_t *involuntary)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru)) {
		*voluntary = *involuntary = 0;
		return;
	}
	*voluntary = (uint64_t)ru.ru_nvcsw;
	*involuntary = (uint64_t)ru.ru_nivcsw;
}

/* ---- case 1: new EX lock + unlock, n pairs ---- */

int64_t cb_lock_unlock_ast(void *ls, const char *name, unsigned int len, uint32_t n)
{
	struct waiter *w = waiter_get(0);
	int64_t t0, rc = 0;
	uint32_t i;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		rc = ast_lock(ls, w, LKM_EXMODE, 0, name, len, 0);
		if (rc) {
			rc = rc < 0 ? rc : BAD_STATUS(rc);
			break;
		}
		rc = ast_unlock(ls, w);
		if (rc)
			break;
	}
	if (!rc)
		rc = now_ns() - t0;
	return rc;
}

int64_t cb_lock_unlock_wait(void *ls, const char *name, unsigned int len, uint32_t n)
{
	struct dlm_lksb lksb;
	int64_t t0, rc;
	uint32_t i;

	memset(&lksb, 0, sizeof(lksb));
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		rc = sync_lock(ls, &lksb, LKM_EXMODE, 0, name, len, NULL);
		if (rc)
			return rc < 0 ? rc : BAD_STATUS(rc);
		rc = sync_unlock(ls, &lksb);
		if (rc)
			return rc;
	}
	return now_ns() - t0;
}

/* ---- case 2: NL -> EX -> NL conversions of a held lock, n pairs ---- */

int64_t cb_convert_ast(void *ls, const char *name, unsigned int len, uint32_t n)
{
	struct waiter *w = waiter_get(0);
	int64_t t0, rc, elapsed = 0;
	uint32_t i;

	rc = ast_lock(ls, w, LKM_NLMODE, 0, name, len, 0);
	if (rc) {
		return rc < 0 ? rc : BAD_STATUS(rc);
	}
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		rc = ast_lock(ls, w, LKM_EXMODE, LKF_CONVERT, NULL, 0, 0);
		if (!rc)
			rc = ast_lock(ls, w, LKM_NLMODE, LKF_CONVERT, NULL, 0, 0);
		if (rc) {
			elapsed = rc < 0 ? rc : BAD_STATUS(rc);
			break;
		}
	}
	if (!elapsed)
		elapsed = now_ns() - t0;
	rc = ast_unlock(ls, w);
	return elapsed < 0 ? elapsed : rc ? rc : elapsed;
}

int64_t cb_convert_wait(void *ls, const char *name, unsigned int len, uint32_t n)
{
	struct dlm_lksb lksb;
	int64_t t0, rc, elapsed = 0;
	uint32_t i;

	memset(&lksb, 0, sizeof(lksb));
	rc = sync_lock(ls, &lksb, LKM_NLMODE, 0, name, len, NULL);
	if (rc)
		return rc < 0 ? rc : BAD_STATUS(rc);
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		rc = sync_lock(ls, &lksb, LKM_EXMODE, LKF_CONVERT, NULL, 0, NULL);
		if (!rc)
			rc = sync_lock(ls, &lksb, LKM_NLMODE, LKF_CONVERT, NULL, 0, NULL);
		if (rc) {
			elapsed = rc < 0 ? rc : BAD_STATUS(rc);
			break;
		}
	}
	if (!elapsed)
		elapsed = now_ns() - t0;
	rc = sync_unlock(ls, &lksb);
	return elapsed < 0 ? elapsed : rc ? rc : elapsed;
}

/* ---- case 3: NOQUEUE EX request refused (EAGAIN), n times ---- */

int64_t cb_trylock_ast(void *ls, const char *name, unsigned int len, uint32_t n)
{
	struct waiter *w = waiter_get(0);
	int64_t t0, rc = 0;
	uint32_t i;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		rc = ast_lock(ls, w, LKM_EXMODE, LKF_NOQUEUE, name, len, 0);
		if (rc != EAGAIN) {
			rc = rc < 0 ? rc : BAD_STATUS(rc);
			break;
		}
		rc = 0;
	}
	if (!rc)
		rc = now_ns() - t0;
	return rc;
}

int64_t cb_trylock_wait(void *ls, const char *name, unsigned int len, uint32_t n)
{
	struct dlm_lksb lksb;
	int64_t t0, rc;
	uint32_t i;

	memset(&lksb, 0, sizeof(lksb));
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		rc = sync_lock(ls, &lksb, LKM_EXMODE, LKF_NOQUEUE, name, len, NULL);
		if (rc != EAGAIN)
			return rc < 0 ? rc : BAD_STATUS(rc);
	}
	return now_ns() - t0;
}

/*
 * ---- case 4: hand-off between two threads ----
 *
 * Thread A takes EX first; then both pass the barrier and B asks for EX.
 * A holder releases the lock when its blocking AST says the other thread
 * waits, then asks again (queued behind the other). Each thread is
 * granted n times: 2n - 1 hand-offs, timed by B from the barrier to its
 * last grant.
 */
struct handoff {
	dlm_lshandle_t ls;
	const char *name;
	unsigned int len;
	uint32_t n;
	int sync; /* the _wait calls instead of dlm_ls_lock + AST */
	pthread_barrier_t barrier;
	int64_t elapsed;
	int64_t err[2];
};

struct handoff_arg {
	struct handoff *h;
	int who; /* 0: A (starts holding), 1: B */
};

static int64_t ho_lock(struct handoff *h, struct waiter *w)
{
	int64_t rc;

	if (h->sync)
		rc = sync_lock(h->ls, &w->lksb, LKM_EXMODE, 0, h->name, h->len, w);
	else
		rc = ast_lock(h->ls, w, LKM_EXMODE, 0, h->name, h->len, 1);
	return rc > 0 ? BAD_STATUS(rc) : rc;
}

static int64_t ho_unlock(struct handoff *h, struct waiter *w)
{
	return h->sync ? sync_unlock(h->ls, &w->lksb) : ast_unlock(h->ls, w);
}

static void *handoff_thread(void *p)
{
	struct handoff_arg *a = p;
	struct handoff *h = a->h;
	struct waiter *w = waiter_get(1 + a->who);
	int64_t rc = 0, t0 = 0;
	uint32_t i;

	if (a->who == 0)
		rc = ho_lock(h, w);
	pthread_barrier_wait(&h->barrier);
	if (rc)
		goto out;
	if (a->who == 0) {
		for (i = 1; i <= h->n; i++) {
			wait_bast(w);
			rc = ho_unlock(h, w);
			if (rc || i == h->n)
				break;
			rc = ho_lock(h, w);
			if (rc)
				break;
		}
	} else {
		t0 = now_ns();
		for (i = 1; i <= h->n; i++) {
			rc = ho_lock(h, w);
			if (rc)
				break;
			if (i == h->n) {
				h->elapsed = now_ns() - t0;
				rc = ho_unlock(h, w);
				break;
			}
			wait_bast(w);
			rc = ho_unlock(h, w);
			if (rc)
				break;
		}
	}
out:
	h->err[a->who] = rc;
	return NULL;
}

static int64_t handoff(void *ls, const char *name, unsigned int len, uint32_t n, int sync)
{
	struct handoff h;
	struct handoff_arg args[2];
	pthread_t t[2];
	int i;

	if (n < 1)
		return -EINVAL;
	memset(&h, 0, sizeof(h));
	h.ls = ls;
	h.name = name;
	h.len = len;
	h.n = n;
	h.sync = sync;
	pthread_barrier_init(&h.barrier, NULL, 2);
	for (i = 0; i < 2; i++) {
		args[i].h = &h;
		args[i].who = i;
	}
	/* A first, so that it holds the lock before B can ask for it. */
	if (pthread_create(&t[0], NULL, handoff_thread, &args[0]))
		return -EAGAIN;
	if (pthread_create(&t[1], NULL, handoff_thread, &args[1])) {
		/* A waits at the barrier for ever: nothing sensible to do. */
		abort();
	}
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	pthread_barrier_destroy(&h.barrier);
	if (h.err[0])
		return h.err[0];
	if (h.err[1])
		return h.err[1];
	return h.elapsed;
}

int64_t cb_handoff_ast(void *ls, const char *name, unsigned int len, uint32_t n)
{
	return handoff(ls, name, len, n, 0);
}

int64_t cb_handoff_wait(void *ls, const char *name, unsigned int len, uint32_t n)
{
	return handoff(ls, name, len, n, 1);
}

/*
 * ---- cases 5 and 6: many held locks ----
 *
 * What a C program keeps per held lock in the AST architecture: its lksb
 * (the kernel knows its address), in one array.
 */
struct cb_held {
	dlm_lshandle_t ls;
	struct dlm_lksb *lksbs;
	uint32_t count, cap;
};

void *cb_held_new(void *ls, uint32_t cap)
{
	struct cb_held *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->lksbs = calloc(cap, sizeof(*h->lksbs));
	if (!h->lksbs) {
		free(h);
		return NULL;
	}
	h->ls = ls;
	h->cap = cap;
	return h;
}

/* Takes EX locks "<prefix><i>" until `upto` are held, one at a time. */
int64_t cb_held_grow(void *p, const char *prefix, uint32_t upto)
{
	struct cb_held *h = p;
	char name[DLM_RESNAME_MAXLEN + 1];
	int len, st;

	if (upto > h->cap)
		return -EINVAL;
	waiter_get(0);
	while (h->count < upto) {
		len = snprintf(name, sizeof(name), "%s%u", prefix, h->count);
		if (len <= 0 || len > DLM_RESNAME_MAXLEN)
			return -EINVAL;
		if (dlm_ls_lock(h->ls, LKM_EXMODE, &h->lksbs[h->count], 0, name, len, 0, ast_fn,
				waiters, NULL, NULL))
			return fail_errno();
		/* The status is in this lock's own lksb, not the waiter's. */
		(void)wait_done(waiters);
		st = h->lksbs[h->count].sb_status;
		if (st)
			return BAD_STATUS(st);
		h->count++;
	}
	return 0;
}


/* ---- cases 7 and 8: many requests in flight, and libdlm's poll mode ---- */

#include <poll.h>

/* Opens the existing lockspace `name` with NO AST thread (poll mode:
 * answers are read by dlm_dispatch on the caller's thread). */
void *cb_open_polled(const char *name)
{
	return dlm_open_lockspace(name);
}

/*
 * The pipelined requests' state: n lock status blocks at fixed addresses,
 * and a count of answers. With the AST thread, the count is kept under a
 * mutex and the caller waits on a condition variable; in poll mode the
 * ASTs run on the caller's thread inside dlm_dispatch.
 */
struct pipe {
	pthread_mutex_t m;
	pthread_cond_t c;
	uint32_t done;
	uint32_t bad;
	int bad_status;
	int threaded;
	struct dlm_lksb *lksbs;
};

static struct pipe pipe_state = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL };

static void pipe_ast(void *arg)
{
	struct dlm_lksb *l = arg;
	struct pipe *p = &pipe_state;

	if (p->threaded)
		pthread_mutex_lock(&p->m);
	if (l->sb_status != 0 && l->sb_status != EUNLOCK) {
		p->bad++;
		p->bad_status = l->sb_status;
	}
	p->done++;
	if (p->threaded) {
		pthread_mutex_unlock(&p->m);
		pthread_cond_signal(&p->c);
	}
}

/* Waits until `target` answers came: on the condition variable, or by
 * poll + dlm_dispatch on this thread. */
static int64_t pipe_wait(void *ls, uint32_t target)
{
	struct pipe *p = &pipe_state;

	if (p->threaded) {
		pthread_mutex_lock(&p->m);
		while (p->done < target)
			pthread_cond_wait(&p->c, &p->m);
		pthread_mutex_unlock(&p->m);
	} else {
		int fd = dlm_ls_get_fd(ls);

		while (p->done < target) {
			struct pollfd pfd = { fd, POLLIN, 0 };

			if (poll(&pfd, 1, 1000) > 0 && dlm_dispatch(fd) < 0)
				return fail_errno();
		}
	}
	return p->bad ? BAD_STATUS(p->bad_status) : 0;
}

static void pipe_reset(int threaded)
{
	struct pipe *p = &pipe_state;

	pthread_mutex_lock(&p->m);
	p->done = 0;
	p->bad = 0;
	p->threaded = threaded;
	pthread_mutex_unlock(&p->m);
}

/* Case 7: n distinct resources "NAME0".."NAME{n-1}": all n EX requests
 * written, then the n answers awaited; then all n unlocks, then their
 * answers. `threaded`: libdlm's AST thread (1) or dlm_dispatch here (0). */
static int64_t pipelined(void *ls, const char *name, unsigned int len, uint32_t n, int threaded)
{
	char res[80];
	int64_t t0, rc;
	uint32_t i;
	struct dlm_lksb *l = calloc(n, sizeof(*l));

	if (!l || len > 60)
		return -ENOMEM;
	pipe_reset(threaded);
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		int k = snprintf(res, sizeof(res), "%.*s%u", (int)len, name, i);

		if (dlm_ls_lock(ls, LKM_EXMODE, &l[i], 0, res, k, 0, pipe_ast, &l[i], NULL, NULL)) {
			rc = fail_errno();
			goto out;
		}
	}
	if ((rc = pipe_wait(ls, n)))
		goto out;
	pipe_reset(threaded);
	for (i = 0; i < n; i++) {
		if (dlm_ls_unlock(ls, l[i].sb_lkid, 0, &l[i], &l[i])) {
			rc = fail_errno();
			goto out;
		}
	}
	if ((rc = pipe_wait(ls, n)))
		goto out;
	rc = now_ns() - t0;
out:
	/* Every answer has come (or the run failed and the process exits):
	 * the kernel no longer writes into the lksbs. */
	free(l);
	return rc;
}

int64_t cb_pipelined_ast(void *ls, const char *name, unsigned int len, uint32_t n)
{
	return pipelined(ls, name, len, n, 1);
}

int64_t cb_pipelined_dispatch(void *ls, const char *name, unsigned int len, uint32_t n)
{
	return pipelined(ls, name, len, n, 0);
}

/* Case 8: n EX lock + unlock pairs on one resource, one request at a
 * time, answers read by poll + dlm_dispatch on this thread. */
int64_t cb_lock_unlock_dispatch(void *ls, const char *name, unsigned int len, uint32_t n)
{
	static struct dlm_lksb l;
	int64_t t0, rc;
	uint32_t i;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		pipe_reset(0);
		if (dlm_ls_lock(ls, LKM_EXMODE, &l, 0, name, len, 0, pipe_ast, &l, NULL, NULL))
			return fail_errno();
		if ((rc = pipe_wait(ls, 1)))
			return rc;
		pipe_reset(0);
		if (dlm_ls_unlock(ls, l.sb_lkid, 0, &l, &l))
			return fail_errno();
		if ((rc = pipe_wait(ls, 1)))
			return rc;
	}
	return now_ns() - t0;
}

/* ---- c_direct: the floor. The caller reads its own answers ---- */

/*
 * No libdlm dispatch at all: after dlm_ls_lock / dlm_ls_unlock the caller
 * read(2)s the answer from the lockspace's descriptor itself, one struct
 * dlm_lock_result (linux/dlm_device.h, device protocol 6.0.x) per read,
 * on a handle with no AST thread, and copies status and lock id into the
 * status block the result names, as libdlm's dispatch does. The
 * descriptor stays blocking: each read returns the next answer, or waits
 * for it. One write and one read per request: nothing can cost less.
 *
 * linux/dlm_device.h cannot be included with libdlm.h (both define
 * struct dlm_lksb, with the same layout): the record is spelt out here.
 */
struct direct_result {
	uint32_t version[3];
	uint32_t length;
	void *user_astaddr;
	void *user_astparam;
	struct dlm_lksb *user_lksb;
	struct dlm_lksb lksb;
	uint8_t bast_mode;
	uint8_t unused[3];
	uint32_t lvb_offset;
};

_Static_assert(sizeof(struct direct_result) == 16 + 3 * sizeof(void *) + sizeof(struct dlm_lksb) + 8,
	       "struct dlm_lock_result's layout");

/* Reads one answer and applies it to the status block it names. */
static int64_t direct_read(int fd)
{
	union {
		struct direct_result r;
		char bytes[sizeof(struct direct_result) + DLM_LVB_LEN];
	} buf;
	ssize_t k = read(fd, &buf, sizeof(buf));

	if (k < 0)
		return fail_errno();
	if (k < (ssize_t)sizeof(buf.r) || buf.r.version[0] != 6)
		return -EPROTO;
	buf.r.user_lksb->sb_status = -buf.r.lksb.sb_status;
	buf.r.user_lksb->sb_lkid = buf.r.lksb.sb_lkid;
	buf.r.user_lksb->sb_flags = buf.r.lksb.sb_flags;
	return 0;
}

/* Never called: the kernel needs an AST address, the caller reads. */
static void direct_ast(void *arg)
{
	(void)arg;
}

/* Cases 1 and 8: n EX lock + unlock pairs on one resource, one request at
 * a time, each answer read by the caller. */
int64_t cb_lock_unlock_direct(void *ls, const char *name, unsigned int len, uint32_t n)
{
	static struct dlm_lksb l;
	int fd = dlm_ls_get_fd(ls);
	int64_t t0, rc;
	uint32_t i;

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if (dlm_ls_lock(ls, LKM_EXMODE, &l, 0, name, len, 0, direct_ast, &l, NULL, NULL))
			return fail_errno();
		if ((rc = direct_read(fd)))
			return rc;
		if (l.sb_status != 0)
			return BAD_STATUS(l.sb_status);
		if (dlm_ls_unlock(ls, l.sb_lkid, 0, &l, &l))
			return fail_errno();
		if ((rc = direct_read(fd)))
			return rc;
		if (l.sb_status != EUNLOCK)
			return BAD_STATUS(l.sb_status);
	}
	return now_ns() - t0;
}

/* Case 7: n EX requests on "NAME0".."NAME{n-1}" written, then their n
 * answers read; then the n unlocks, then theirs. */
int64_t cb_pipelined_direct(void *ls, const char *name, unsigned int len, uint32_t n)
{
	char res[80];
	int fd = dlm_ls_get_fd(ls);
	int64_t t0, rc = 0;
	uint32_t i;
	struct dlm_lksb *l = calloc(n, sizeof(*l));

	if (!l || len > 60)
		return -ENOMEM;
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		int k = snprintf(res, sizeof(res), "%.*s%u", (int)len, name, i);

		if (dlm_ls_lock(ls, LKM_EXMODE, &l[i], 0, res, k, 0, direct_ast, &l[i], NULL, NULL)) {
			rc = fail_errno();
			goto out;
		}
	}
	for (i = 0; i < n; i++)
		if ((rc = direct_read(fd)))
			goto out;
	for (i = 0; i < n; i++) {
		if (l[i].sb_status != 0) {
			rc = BAD_STATUS(l[i].sb_status);
			goto out;
		}
		if (dlm_ls_unlock(ls, l[i].sb_lkid, 0, &l[i], &l[i])) {
			rc = fail_errno();
			goto out;
		}
	}
	for (i = 0; i < n; i++)
		if ((rc = direct_read(fd)))
			goto out;
	rc = now_ns() - t0;
out:
	/* Every answer was read (or the run failed and the process exits). */
	free(l);
	return rc;
}
