/* libdlm.h uses mode_t without including <sys/types.h>. */
#include <sys/types.h>
/* The threaded library's declarations (dlm_pthread_init, dlm_ls_pthread_init,
 * dlm_pthread_cleanup, lock_resource, unlock_resource) are only visible with
 * _REENTRANT; dlm-sys links the threaded libdlm.so. */
#ifndef _REENTRANT
#define _REENTRANT 1
#endif
#include <libdlm.h>
