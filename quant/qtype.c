/* qtype.c — the names of the storage formats (lk_qtype_name, lk_qtype_from_name): the bottom of
 * quant/, used by the quantisers (q4_ref.c, in messages) and the public API (quant_api.c) alike,
 * so that calls between those files go one way. */
#include <strings.h>

#include "q4.h"
#include "core/status.h"

static const char *const k_names[LK_QTYPE_COUNT] = {
    "f32",  "f16",  "bf16", "q4_0", "q8_0", "iq4_nl", "nf4",  "q4_1",
    "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k",   "q6_k", "iq4_xs"};

const char *lk_qtype_name(lk_qtype t)
{
    return (int)t >= 0 && t < LK_QTYPE_COUNT ? k_names[t] : "?";
}

lk_status lk_qtype_from_name(const char *name, lk_qtype *out)
{
    if (name && !strcasecmp(name, "none")) { /* no quantisation: the command lines' --quant none */
        *out = LK_QTYPE_F32;
        return LK_OK;
    }
    for (int i = 0; name && i < LK_QTYPE_COUNT; i++) {
        if (!strcasecmp(name, k_names[i])) {
            *out = (lk_qtype)i;
            return LK_OK;
        }
    }
    return status_fail(LK_ERR_ARG,
                       "quant type '%s' unknown, expected one of none f32 f16 bf16 q4_0 q8_0 "
                       "iq4_nl nf4 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_xs",
                       name ? name : "(null)");
}
