/* The lockspace device's protocol: what a read(2) of /dev/misc/dlm_NAME
 * returns (struct dlm_lock_result, one per read). Bound apart from
 * libdlm.h: linux/dlm.h, which this includes, has its own struct dlm_lksb. */
#include <linux/dlm_device.h>
