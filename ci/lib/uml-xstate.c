/* Preloaded into linux.uml (Debian's 6.1) by ci/lib/uml.sh.
 *
 * On hosts whose CPUs have large extended register state (AMX: several KiB
 * of tile registers), the host kernel accepts PTRACE_SETREGSET with
 * NT_X86_XSTATE only with a buffer of the full XSAVE size, while UML 6.1
 * writes its own, smaller buffer: the write fails with EFAULT, and UML
 * aborts at boot ("ptrace set fp regs failed, errno = 14"). This shim pads
 * the write: it reads the full state of the traced process, lays UML's
 * bytes over its start and writes the full buffer back. On other hosts the
 * two sizes agree and the write is the same as UML's own. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define NT_X86_XSTATE_NOTE 0x202

static __thread unsigned char full[65536] __attribute__((aligned(64)));

long ptrace(enum __ptrace_request req, ...)
{
	static long (*real)(enum __ptrace_request, pid_t, void *, void *);
	va_list ap;
	va_start(ap, req);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (long (*)(enum __ptrace_request, pid_t, void *, void *))dlsym(RTLD_NEXT, "ptrace");
	if (req == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE_NOTE) {
		struct iovec *uml = data, iov = { full, sizeof(full) };
		if (real(PTRACE_GETREGSET, pid, addr, &iov) < 0)
			return -1;
		size_t n = uml->iov_len < iov.iov_len ? uml->iov_len : iov.iov_len;
		memcpy(full, uml->iov_base, n);
		return real(PTRACE_SETREGSET, pid, addr, &iov);
	}
	return real(req, pid, addr, data);
}
