/* q8_pack.h — the packed weight panel the SIMD int8 GEMMs (q8_avx2.c, q8_avx512.c, q8_neon.c)
 * share, and its generic packer (plain C, compiled with each variant's flags). A panel holds nr
 * output rows o0 .. o0+nr-1 of a weight over all its blocks (rows past the weight's end are zero),
 * block after block; one block of the panel is
 *   W  [8][nr][4] int8   value 4g+j of row r at W[g][r][j] (lanes over rows: a vector load gives
 *                        4 consecutive values of nr rows, what vpdpbusd / vpmaddubsw / sdot take)
 *   S0 [nr] fp32         s[0] of each row (simple types: the only scale)
 *   C0 [nr] int32        -128 * Σ q over the first half (simple types: over the whole block): the
 *                        correction for activations stored as x + 128 (vpdpbusd's unsigned operand)
 * and, for the types that are not simple (q8_simple), then S1, M0, M1 [nr] fp32 and C1 [nr] int32
 * (the second half's correction), in that order. A microkernel then multiplies a panel by rows of
 * quantised activations with every weight byte loaded once per group of activation rows. */
#ifndef LK_Q8_PACK_H
#define LK_Q8_PACK_H

#include <string.h>

#include "q8.h"

#define Q8P_CHUNK 16 /* blocks expanded at a time on the stack (48 bytes each) */

/* Bytes of one block of a panel of nr rows. */
static inline size_t q8p_block_bytes(int nr, int simple)
{
    return (size_t)nr * (32 + 4 * (simple ? 2 : 6));
}

/* Pack rows [o0, o0+nrow) (nrow <= nr) of w, all nb blocks, into panel. */
static inline void q8p_pack(const q4_weight *w, q8_expand_fn expand, int simple, int64_t o0,
                            int nrow, int nr, int64_t nb, uint8_t *panel)
{
    const size_t pb = q8p_block_bytes(nr, simple);
    q8_wblock e[Q8P_CHUNK];
    for (int r = 0; r < nr; r++) {
        const uint8_t *row =
            (const uint8_t *)w->data + (size_t)(o0 + (r < nrow ? r : 0)) * w->row_bytes;
        for (int64_t b0 = 0; b0 < nb; b0 += Q8P_CHUNK) {
            const int64_t n = nb - b0 < Q8P_CHUNK ? nb - b0 : Q8P_CHUNK;
            if (r < nrow)
                expand(w, row, b0, n, e);
            else
                memset(e, 0, sizeof e);
            for (int64_t i = 0; i < n; i++) {
                uint8_t *p = panel + (size_t)(b0 + i) * pb;
                for (int g = 0; g < 8; g++)
                    memcpy(p + (size_t)(g * nr + r) * 4, e[i].q + 4 * g, 4);
                int32_t c0 = 0, c1 = 0;
                for (int k = 0; k < 16; k++) {
                    c0 += e[i].q[k];
                    c1 += e[i].q[k + 16];
                }
                float *f = (float *)(void *)(p + (size_t)nr * 32);
                f[r] = e[i].s[0];
                int32_t *c = (int32_t *)(void *)(f + nr);
                if (simple) {
                    c[r] = -128 * (c0 + c1);
                } else {
                    f[2 * nr + r] = e[i].s[1];
                    f[3 * nr + r] = e[i].m[0];
                    f[4 * nr + r] = e[i].m[1];
                    c[r] = -128 * c0;
                    c[4 * nr + r] = -128 * c1;
                }
            }
        }
    }
}

#endif /* LK_Q8_PACK_H */
