/* q8_ilv.c — the row-interleaved layout's conversions and block accessor (q8_ilv.h), plain C. */
#include <string.h>

#include "q8_ilv.h"
#include "core/status.h"

size_t q8i_scratch_bytes(const q4_weight *w)
{
    return (size_t)Q8I_R * w->row_bytes;
}

/* Plain block b of row r of a group (rows: the group's 16 rows in the row layout) <-> its place
 * in the group's record b (rec). to_rec: plain -> record, else record -> plain. */
static void move_block(int qtype, uint8_t *plain, uint8_t *rec, int r, int to_rec)
{
    const size_t hb = q8i_hb(qtype), nc = (q8i_bsz(qtype) - hb) / 4;
    for (size_t h = 0; h < hb / 2; h++) {
        uint8_t *x = rec + h * 2 * Q8I_R + 2 * (size_t)r, *y = plain + 2 * h;
        memcpy(to_rec ? x : y, to_rec ? y : x, 2);
    }
    for (size_t c = 0; c < nc; c++) {
        uint8_t *x = rec + hb * Q8I_R + c * 4 * Q8I_R + 4 * (size_t)r, *y = plain + hb + 4 * c;
        memcpy(to_rec ? x : y, to_rec ? y : x, 4);
    }
}

/* Every whole group of w: its rows copied to scratch, then moved into place one way or back. */
static void convert(const q4_weight *w, uint8_t *data, uint8_t *scratch, int to_rec)
{
    const size_t bsz = q8i_bsz(w->qtype), gb = (size_t)Q8I_R * w->row_bytes;
    const int64_t nb = (int64_t)(w->row_bytes / bsz);
    for (int64_t g = 0; g < w->out / Q8I_R; g++) {
        uint8_t *grp = data + (size_t)g * gb;
        memcpy(scratch, grp, gb);
        for (int r = 0; r < Q8I_R; r++)
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *plain = (to_rec ? scratch : grp) + (size_t)r * w->row_bytes + b * bsz;
                uint8_t *rec = (to_rec ? grp : scratch) + (size_t)b * Q8I_R * bsz;
                move_block(w->qtype, plain, rec, r, to_rec);
            }
    }
}

void q8i_convert(q4_weight *w, void *data, void *scratch)
{
    LK_ASSERT(!w->ilv && q8i_supports(w->qtype) && data == w->data);
    LK_ASSERT(w->row_bytes % q8i_bsz(w->qtype) == 0);
    convert(w, data, scratch, 1);
    w->ilv = 1;
}

void q8i_revert(q4_weight *w, void *data, void *scratch)
{
    LK_ASSERT(w->ilv && data == w->data);
    convert(w, data, scratch, 0);
    w->ilv = 0;
}

const uint8_t *q8i_blocks(const q4_weight *w, int64_t o, int64_t b0, int64_t nb, uint8_t *buf)
{
    const size_t bsz = q8i_bsz(w->qtype);
    if (o >= q8i_rows(w))
        return (const uint8_t *)w->data + (size_t)o * w->row_bytes + (size_t)b0 * bsz;
    for (int64_t b = 0; b < nb; b++)
        move_block(w->qtype, buf + (size_t)b * bsz,
                   (uint8_t *)(uintptr_t)q8i_record(w, o / Q8I_R, b0 + b), (int)(o % Q8I_R), 0);
    return buf;
}
