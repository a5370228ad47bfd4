/* q8_ilv.h — the row-interleaved layout of a weight matrix for the int8 path (q4_weight.ilv = 1),
 * made in place from the row layout of q4.h (q8i_convert) for the types Q4_0, IQ4_NL, Q8_0 and
 * Q4_1, so that a GEMV reads the blocks of 16 rows with plain contiguous loads.
 *
 * Rows go in groups of Q8I_R = 16; each whole group g (rows 16g .. 16g+15, all below out) holds,
 * in the same 16·row_bytes bytes it held before, one record per block column b (bsz = the plain
 * block's bytes, hb = its header's: 2 for d, 4 for Q4_1's d and m):
 *   at data + 16g·row_bytes + b·16·bsz:
 *     heads   [hb/2][16] fp16   the 16 rows' d (Q4_1: then their 16 m), row order
 *     chunks  [nc][16][4] bytes chunk c = bytes 4c..4c+3 of the rows' code bytes (qs), row order
 *   nc = (bsz - hb)/4: Q4_0 / IQ4_NL 4 (288 B = 16 x 18), Q4_1 4 (320 = 16 x 20), Q8_0 8 (544 =
 *   16 x 34). One 64-byte chunk is 16 rows x 4 code bytes: the 16 lanes of a zmm are the rows.
 * The rows of a last partial group (out % 16) stay in the row layout, where they were. Nothing
 * else changes (row_bytes, the shape, the values): q8i_blocks gives any row's plain blocks back,
 * for readers that do not read the layout themselves. */
#ifndef LK_Q8_ILV_H
#define LK_Q8_ILV_H

#include <stddef.h>
#include <stdint.h>

#include "q4.h"

#define Q8I_R 16 /* rows per interleaved group */

/* 1 for the types the layout is defined for (Q4_0, IQ4_NL, Q8_0, Q4_1). */
static inline int q8i_supports(int qtype)
{
    return qtype == LK_QTYPE_Q4_0 || qtype == LK_QTYPE_IQ4_NL || qtype == LK_QTYPE_Q8_0 ||
           qtype == LK_QTYPE_Q4_1;
}

/* Bytes of a plain block of an interleavable type (18, 18, 34, 20). */
static inline size_t q8i_bsz(int qtype)
{
    return qtype == LK_QTYPE_Q8_0 ? 34 : qtype == LK_QTYPE_Q4_1 ? 20 : 18;
}

/* Bytes of a plain block's header: d (2), or Q4_1's d and m (4). */
static inline size_t q8i_hb(int qtype)
{
    return qtype == LK_QTYPE_Q4_1 ? 4 : 2;
}

/* Rows of w in whole interleaved groups (0 for the row layout). */
static inline int64_t q8i_rows(const q4_weight *w)
{
    return w->ilv ? w->out / Q8I_R * Q8I_R : 0;
}

/* The record of group g, block column b of an interleaved w. */
static inline const uint8_t *q8i_record(const q4_weight *w, int64_t g, int64_t b)
{
    return (const uint8_t *)w->data + (size_t)g * Q8I_R * w->row_bytes +
           (size_t)b * Q8I_R * q8i_bsz(w->qtype);
}

/* Bytes of scratch q8i_convert and q8i_revert need: one group of rows. */
size_t q8i_scratch_bytes(const q4_weight *w);
/* Interleave w's whole groups in place (data: w->data, writable; scratch: q8i_scratch_bytes) and
 * set w->ilv. w must be in the row layout and of a type q8i_supports. */
void q8i_convert(q4_weight *w, void *data, void *scratch);
/* The inverse: w back in the row layout, byte for byte as before q8i_convert; w->ilv = 0. */
void q8i_revert(q4_weight *w, void *data, void *scratch);
/* The plain (row layout) bytes of blocks [b0, b0+nb) of row o of w, in either layout: a pointer
 * into w->data where the row is stored so, else buf (nb·bsz bytes) filled from the records. */
const uint8_t *q8i_blocks(const q4_weight *w, int64_t o, int64_t b0, int64_t nb, uint8_t *buf);

#endif /* LK_Q8_ILV_H */
