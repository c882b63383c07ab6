/* A C program on libdlm's default lockspace, for tests/cluster_default.rs:
 * dlm_lock/dlm_unlock on the lockspace "default" (which libdlm opens, or
 * creates with mode 0600, on first use), answers read with dlm_get_fd,
 * poll and dlm_dispatch.
 *
 *   default_ls try RES          EX with LKF_NOQUEUE: prints "granted" (then
 *                               unlocks, "released") or "busy"; exit 0
 *   default_ls hold RES FILE    EX, waiting: prints "granted", waits until
 *                               FILE exists, unlocks, prints "released"
 * Exit 1 on any other failure. */
#include <sys/types.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <libdlm.h>

static volatile int done;

static void ast(void *arg)
{
	(void)arg;
	done = 1;
}

/* Reads answers until the AST has run. */
static int wait_ast(void)
{
	int fd = dlm_get_fd();
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (!done) {
		if (poll(&p, 1, 60000) <= 0)
			return -1;
		if (dlm_dispatch(fd) < 0 && errno != EAGAIN)
			return -1;
	}
	done = 0;
	return 0;
}

int main(int argc, char **argv)
{
	struct dlm_lksb lksb;
	int try_;

	if (argc < 3)
		return 2;
	try_ = strcmp(argv[1], "try") == 0;
	memset(&lksb, 0, sizeof(lksb));
	if (dlm_lock(LKM_EXMODE, &lksb, try_ ? LKF_NOQUEUE : 0, argv[2],
		     strlen(argv[2]), 0, ast, NULL, NULL, NULL) < 0) {
		perror("dlm_lock");
		return 1;
	}
	if (wait_ast() < 0) {
		perror("wait");
		return 1;
	}
	if (lksb.sb_status == EAGAIN) {
		printf("busy\n");
		fflush(stdout);
		return 0;
	}
	if (lksb.sb_status != 0) {
		fprintf(stderr, "status %d\n", lksb.sb_status);
		return 1;
	}
	printf("granted\n");
	fflush(stdout);
	if (!try_)
		while (access(argv[3], F_OK) != 0)
			usleep(20000);
	if (dlm_unlock(lksb.sb_lkid, 0, &lksb, NULL) < 0 || wait_ast() < 0) {
		perror("dlm_unlock");
		return 1;
	}
	printf("released\n");
	fflush(stdout);
	return 0;
}
