/* q8_gemv_neon.c — the NEON int8 matrix-vector kernel (q8_gemv.h) with the dot-product
 * instructions (sdot, Armv8.2-A dotprod), bit for bit q8_gemm_fwd_ref; the neon table takes it for
 * T <= gemv_t (q8_dispatch.c). Per block of a group of 8 output rows: each row's signed codes
 * (straight from a core type's block, or from its expansion by q8_expander) times the activation
 * block's halves by two vdotq_s32 give 4 int32 partial sums of i0 and of i1; vpaddq_s32 reduces
 * 4 rows' partials into the lanes of one vector (lane r: row r); then the fp32 update of q8.h on
 * the 8 rows in two float32x4 (vfmaq_f32 is the fused fmaf). Signed by signed: no correction.
 * Half a whole group of an interleaved weight (q8_ilv.h) is read from its records by sdot by lane
 * (group_ilv). */
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <arm_neon.h>
#include <string.h>

#include "q8_gemv.h"
#include "q8_ilv.h"

#define R  8 /* output rows per group: two float32x4 */
#define MT Q8V_MT

/* The signed codes of block b of a row of a core type: values 0..15 (*lo) and 16..31 (*hi). */
static inline __attribute__((always_inline)) void codes(int qt, const uint8_t *row, int64_t b,
                                                        int8x16_t tab, int8x16_t *lo, int8x16_t *hi)
{
    const uint8x16_t m4 = vdupq_n_u8(15);
    if (qt == LK_QTYPE_Q8_0) {
        *lo = vld1q_s8((const int8_t *)(row + b * 34 + 2));
        *hi = vld1q_s8((const int8_t *)(row + b * 34 + 18));
    } else if (qt == LK_QTYPE_NF4) { /* byte k holds value 2k (high nibble) and 2k+1 */
        const uint8x16_t c = vld1q_u8(row + b * 16);
        const uint8x16_t h = vshrq_n_u8(c, 4), l = vandq_u8(c, m4);
        *lo = vqtbl1q_s8(tab, vzip1q_u8(h, l));
        *hi = vqtbl1q_s8(tab, vzip2q_u8(h, l));
    } else { /* Q4_0 (q = nibble - 8) and IQ4_NL (through the table): 18-byte blocks */
        const uint8x16_t c = vld1q_u8(row + b * 18 + 2);
        const uint8x16_t l = vandq_u8(c, m4), h = vshrq_n_u8(c, 4);
        if (qt == LK_QTYPE_IQ4_NL) {
            *lo = vqtbl1q_s8(tab, l);
            *hi = vqtbl1q_s8(tab, h);
        } else {
            *lo = vsubq_s8(vreinterpretq_s8_u8(l), vdupq_n_s8(8));
            *hi = vsubq_s8(vreinterpretq_s8_u8(h), vdupq_n_s8(8));
        }
    }
}

/* The scales of block b of the 8 rows of a core type (two float32x4). */
static inline __attribute__((always_inline)) void
scales(int qt, const q4_weight *w, const uint8_t *const *rows, int64_t b, float32x4_t s[2])
{
    if (qt == LK_QTYPE_NF4) {
        const int bs = w->block;
        const int64_t off = (w->in + bs - 1) / bs * (bs / 2) + (b * Q8_QK / bs) * 4;
        float amax[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            memcpy(&amax[r], rows[r] + off, 4);
        s[0] = vdivq_f32(vld1q_f32(amax), vdupq_n_f32(127.0f));
        s[1] = vdivq_f32(vld1q_f32(amax + 4), vdupq_n_f32(127.0f));
        return;
    }
    const size_t off = (size_t)b * (qt == LK_QTYPE_Q8_0 ? 34 : 18);
    uint16_t d[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        memcpy(&d[r], rows[r] + off, 2);
    s[0] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d)));
    s[1] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d + 4)));
}

/* i[t][h][g]: the sums of half h (i0, i1) of rows 4g..4g+3 in the lanes, from the codes lo/hi of
 * the 8 rows and the activation blocks a[t]. */
static inline __attribute__((always_inline)) void sums(const int8x16_t lo[R], const int8x16_t hi[R],
                                                       const q8_ablock *const a[MT], int mt,
                                                       int32x4_t i[MT][2][2])
{
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        const int8x16_t x0 = vld1q_s8(a[t]->q), x1 = vld1q_s8(a[t]->q + 16);
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
            int32x4_t p0[4], p1[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                p0[r] = vdotq_s32(vdupq_n_s32(0), lo[4 * g + r], x0);
                p1[r] = vdotq_s32(vdupq_n_s32(0), hi[4 * g + r], x1);
            }
            i[t][0][g] = vpaddq_s32(vpaddq_s32(p0[0], p0[1]), vpaddq_s32(p0[2], p0[3]));
            i[t][1][g] = vpaddq_s32(vpaddq_s32(p1[0], p1[1]), vpaddq_s32(p1[2], p1[3]));
        }
    }
}

/* The fp32 update of q8.h for one block: f = s0 [s1 m0 m1] of the 8 rows (two vectors each). */
static inline __attribute__((always_inline)) void update(const int32x4_t i[MT][2][2],
                                                         const q8_ablock *const a[MT], int mt,
                                                         int simple, const float32x4_t f[4][2],
                                                         float32x4_t acc[MT][2])
{
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        const float32x4_t d = vdupq_n_f32(a[t]->d);
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
            float32x4_t v;
            if (simple) {
                v = vmulq_f32(f[0][g], vcvtq_f32_s32(vaddq_s32(i[t][0][g], i[t][1][g])));
            } else {
                v = vmulq_f32(f[0][g], vcvtq_f32_s32(i[t][0][g]));
                v = vfmaq_f32(v, f[1][g], vcvtq_f32_s32(i[t][1][g]));
                v = vfmaq_f32(v, f[2][g], vdupq_n_f32((float)a[t]->s16[0]));
                v = vfmaq_f32(v, f[3][g], vdupq_n_f32((float)a[t]->s16[1]));
            }
            acc[t][g] = vfmaq_f32(acc[t][g], d, v);
        }
    }
}

static inline __attribute__((always_inline)) void
store(const q8v_job *j, const float32x4_t acc[MT][2], int mt, int64_t o0, int nrow, int64_t t0)
{
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++) {
        float *y = j->Y + (t0 + t) * j->w->out + o0;
        float tmp[R];
        vst1q_f32(tmp, acc[t][0]);
        vst1q_f32(tmp + 4, acc[t][1]);
        for (int r = 0; r < nrow; r++)
            y[r] = j->bias ? tmp[r] + j->bias[o0 + r] : tmp[r];
    }
}

/* ---- groups of an interleaved weight (q8_ilv.h) ---------------------------------------------- */

/* i[t][h][g] of half h of a whole group (8 rows from o0, o0 % 8 == 0; NEON's lanes are 4 rows):
 * 16 bytes of a record's chunk c are 4 code bytes of each of 4 rows, multiplied by activation
 * bytes 4c..4c+3 (lane c of the half block) with one sdot by lane, the lanes already the rows'
 * sums (no pairwise reduction); the 8 rows' scales are one load. Q4_0's codes are its nibbles - 8,
 * IQ4_NL's through the table, Q4_1's its nibbles. */
#define DOT4(s, v, x)                               \
    do {                                            \
        (s) = vdotq_laneq_s32((s), (v)[0], (x), 0); \
        (s) = vdotq_laneq_s32((s), (v)[1], (x), 1); \
        (s) = vdotq_laneq_s32((s), (v)[2], (x), 2); \
        (s) = vdotq_laneq_s32((s), (v)[3], (x), 3); \
    } while (0)

static inline __attribute__((always_inline)) void group_ilv(const q8v_job *j, int qt, int64_t o0,
                                                            int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const size_t h = (size_t)(o0 % Q8I_R) / R, hb = q8i_hb(qt), rs = Q8I_R * q8i_bsz(qt);
    const uint8_t *rec = q8i_record(j->w, o0 / Q8I_R, 0);
    const int8x16_t tab = vld1q_s8(q4_iq4nl_values);
    const uint8x16_t m4 = vdupq_n_u8(15);
    const q8_ablock *A = j->A + t0 * nb;
    float32x4_t acc[MT][2];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++, rec += rs) {
        const q8_ablock *a[MT];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            a[t] = &A[t * nb + b];
        const uint8_t *c0 = rec + hb * Q8I_R + 32 * h;
        int8x16_t lo[2][4], hi[2][4]; /* [g][c]: rows 4g..4g+3, values 4c.. and 16+4c.. */
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const uint8_t *p = c0 + 64 * c + 16 * g;
                if (qt == LK_QTYPE_Q8_0) {
                    lo[g][c] = vld1q_s8((const int8_t *)p);
                    hi[g][c] = vld1q_s8((const int8_t *)(p + 4 * 64));
                    continue;
                }
                const uint8x16_t u = vld1q_u8(p), l = vandq_u8(u, m4), hh = vshrq_n_u8(u, 4);
                if (qt == LK_QTYPE_IQ4_NL) {
                    lo[g][c] = vqtbl1q_s8(tab, l);
                    hi[g][c] = vqtbl1q_s8(tab, hh);
                } else if (qt == LK_QTYPE_Q4_0) {
                    lo[g][c] = vsubq_s8(vreinterpretq_s8_u8(l), vdupq_n_s8(8));
                    hi[g][c] = vsubq_s8(vreinterpretq_s8_u8(hh), vdupq_n_s8(8));
                } else { /* Q4_1 */
                    lo[g][c] = vreinterpretq_s8_u8(l);
                    hi[g][c] = vreinterpretq_s8_u8(hh);
                }
            }
        int32x4_t i[MT][2][2];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++) {
            const int8x16_t x0 = vld1q_s8(a[t]->q), x1 = vld1q_s8(a[t]->q + 16);
#pragma GCC unroll 2
            for (int g = 0; g < 2; g++) {
                int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
                DOT4(s0, lo[g], x0);
                DOT4(s1, hi[g], x1);
                i[t][0][g] = s0;
                i[t][1][g] = s1;
            }
        }
        float32x4_t f[4][2];
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
            const uint16_t *d = (const uint16_t *)(const void *)(rec + 16 * h + 8 * g);
            f[0][g] = f[1][g] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d)));
            if (qt == LK_QTYPE_Q4_1)
                f[2][g] = f[3][g] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d + Q8I_R)));
        }
        update(i, a, mt, qt != LK_QTYPE_Q4_1, f, acc);
    }
    store(j, acc, mt, o0, R, t0);
}

static inline __attribute__((always_inline)) void group_core(const q8v_job *j, int qt, int64_t o0,
                                                             int nrow, int64_t t0, int mt)
{
    if (o0 < q8i_rows(j->w)) { /* half of a whole interleaved group (never NF4) */
        group_ilv(j, qt, o0, t0, mt);
        return;
    }
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const int8x16_t tab = vld1q_s8(qt == LK_QTYPE_NF4 ? q8_nf4_i8 : q4_iq4nl_values);
    const q8_ablock *A = j->A + t0 * nb;
    float32x4_t acc[MT][2];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const q8_ablock *a[MT];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            a[t] = &A[t * nb + b];
        int8x16_t lo[R], hi[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            codes(qt, rows[r], b, tab, &lo[r], &hi[r]);
        int32x4_t i[MT][2][2];
        sums(lo, hi, a, mt, i);
        float32x4_t f[4][2];
        scales(qt, j->w, rows, b, f[0]);
        update(i, a, mt, 1, f, acc);
    }
    store(j, acc, mt, o0, nrow, t0);
}

/* A group of Q4_1 (d, m, 16 bytes of nibbles q = 0..15: value d·q + m), read straight from its
 * blocks; the general product with s = d and m in both halves. */
static inline __attribute__((always_inline)) void group_q4_1(const q8v_job *j, int64_t o0, int nrow,
                                                             int64_t t0, int mt)
{
    if (o0 < q8i_rows(j->w)) { /* half of a whole interleaved group */
        group_ilv(j, LK_QTYPE_Q4_1, o0, t0, mt);
        return;
    }
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const q8_ablock *A = j->A + t0 * nb;
    float32x4_t acc[MT][2];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const q8_ablock *a[MT];
#pragma GCC unroll 4
        for (int t = 0; t < mt; t++)
            a[t] = &A[t * nb + b];
        int8x16_t lo[R], hi[R];
        uint16_t d[2][R];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *x = rows[r] + b * 20;
            const uint8x16_t c = vld1q_u8(x + 4);
            lo[r] = vreinterpretq_s8_u8(vandq_u8(c, vdupq_n_u8(15)));
            hi[r] = vreinterpretq_s8_u8(vshrq_n_u8(c, 4));
            memcpy(&d[0][r], x, 2);
            memcpy(&d[1][r], x + 2, 2);
        }
        int32x4_t i[MT][2][2];
        sums(lo, hi, a, mt, i);
        float32x4_t f[4][2];
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
            f[0][g] = f[1][g] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d[0] + 4 * g)));
            f[2][g] = f[3][g] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d[1] + 4 * g)));
        }
        update(i, a, mt, 0, f, acc);
    }
    store(j, acc, mt, o0, nrow, t0);
}

static inline __attribute__((always_inline)) void
group_expanded(const q8v_job *j, int simple, int64_t o0, int nrow, int64_t t0, int mt)
{
    const int64_t nb = j->nb;
    const uint8_t *rows[R];
    q8v_rows(j, o0, nrow, rows);
    const q8_ablock *A = j->A + t0 * nb;
    float32x4_t acc[MT][2];
#pragma GCC unroll 4
    for (int t = 0; t < mt; t++)
        acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    q8_wblock e[R][Q8V_CH];
    const int last = nrow > 1 ? nrow - 1 : 0; /* nrow >= 1 */
    for (int64_t b0 = 0; b0 < nb; b0 += Q8V_CH) {
        const int64_t n = nb - b0 < Q8V_CH ? nb - b0 : Q8V_CH;
        for (int r = 0; r < nrow; r++)
            j->expand(j->w, rows[r], b0, n, e[r]);
        for (int64_t c = 0; c < n; c++) {
            const q8_ablock *a[MT];
#pragma GCC unroll 4
            for (int t = 0; t < mt; t++)
                a[t] = &A[t * nb + b0 + c];
            int8x16_t lo[R], hi[R];
            float fs[4][R]; /* s0 s1 m0 m1 of each row */
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const q8_wblock *x = &e[r < nrow ? r : last][c];
                lo[r] = vld1q_s8(x->q);
                hi[r] = vld1q_s8(x->q + 16);
                fs[0][r] = x->s[0];
                fs[1][r] = x->s[1];
                fs[2][r] = x->m[0];
                fs[3][r] = x->m[1];
            }
            int32x4_t i[MT][2][2];
            sums(lo, hi, a, mt, i);
            float32x4_t f[4][2];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                f[k][0] = vld1q_f32(fs[k]);
                f[k][1] = vld1q_f32(fs[k] + 4);
            }
            update(i, a, mt, simple, f, acc);
        }
    }
    store(j, acc, mt, o0, nrow, t0);
}

Q8V_ALL_GROUPS

size_t q8_gemv_work_neon(const q4_weight *w, int64_t T, int n_threads)
{
    return q8v_work(w, T, n_threads);
}

void q8_gemv_fwd_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size)
{
    q8v_job j = {
        .w = w, .bias = bias, .X = X, .Y = Y, .T = T, .nr = R, .ilv = 1, .quant = q8_quantize_act};
    Q8V_SET_GROUPS(j, w->qtype, q8_expander(w->qtype));
    q8v_run(&j, n_threads, work, work_size);
}
