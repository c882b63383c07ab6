/* libdlmcontrol.h uses uint32_t, uint64_t and DLM_LOCKSPACE_LEN without
 * including the headers that define them. */
#include <stdint.h>
#include <sys/types.h>
#include <linux/dlmconstants.h>
#include <libdlmcontrol.h>
