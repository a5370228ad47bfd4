/* attn_ref.c — the blocked attention kernels of attn_kernel.h for portable C (the reference; all
 * LK_SIMD=OFF builds). */
#define ATTN_VARIANT ref
#include "nn/attn_kernel.h"
