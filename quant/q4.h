/* clang-format off */
/* q4.h — internal API of the 4-bit world: block layouts, row quantisers, the quantised weight
 * descriptor, the fused dequant-GEMM kernels and their dispatch table.
 *
 * Byte layouts (all little-endian, one row after another, `row_bytes` apart):
 *   Q4_0   (llama.cpp block_q4_0):   per 32 values {fp16 d; u8 qs[16]}; the low nibble of qs[j]
 *                                    is value j, the high nibble value j+16; x = d*(q-8).
 *   IQ4_NL (llama.cpp block_iq4_nl): as Q4_0, x = d*kvalues_iq4nl[q].
 *   Q8_0   (llama.cpp block_q8_0):   per 32 values {fp16 d; i8 qs[32]}; x = d*q.
 *   NF4    (bitsandbytes; blocksize B a power of two in 32..4096): a row of nb = ceil(n/B) blocks
 *          is nb*B/2 bytes of packed codes (byte j holds value 2j in the HIGH nibble and 2j+1 in
 *          the low nibble, bitsandbytes' packing) followed by nb fp32 absmax; x = absmax*nf4[q].
 *          For a row length that is a multiple of B these are bitsandbytes' packed tensor and
 *          absmax array, interleaved per row (q4_nf4_from_bnb converts). Double quantisation
 *          (absmax - mean, 8-bit blockwise in blocks of 256 with the signed dynamic map) is a
 *          storage form (q4_nf4_dq): kernels take the fp32-absmax rows, and
 *          q4_nf4_dq_dequantize() gives exactly the absmax values bitsandbytes computes.
 * The other GGUF types (ggml-common.h layouts; each value is dequantised in fp32 exactly as
 * gguf-py's dequantize_blocks does, two roundings; quantised bit-exactly as ggml does without an
 * importance matrix, qk_quant.c):
 *   Q4_1 {fp16 d, m; u8 qs[16]}: nibbles as Q4_0, x = d*q + m.
 *   Q5_0 {fp16 d; u8 qh[4]; u8 qs[16]}: q = nibble | bit j of the little-endian u32 qh << 4,
 *        x = d*(q-16).   Q5_1 {fp16 d, m; u8 qh[4]; u8 qs[16]}: x = d*q + m.
 *   K-quants, super-blocks of QK_K = 256 values; value i = 128h + 32s + l (h 0..1, s 0..3):
 *   Q2_K {u8 scales[16]; u8 qs[64]; fp16 d, dmin}: q = (qs[32h+l] >> 2s) & 3; group g = i/16:
 *        x = (d*(scales[g] & 15))*q - dmin*(scales[g] >> 4).
 *   Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d}: q = ((qs[32h+l] >> 2s) & 3) - 4 unless
 *        bit i/32 of hmask[l] is set; 16 6-bit scales sc_g (low nibbles from scales[0..7], high
 *        bit pairs from scales[8..11]), x = (d*(sc_g - 32))*q.
 *   Q4_K {fp16 d, dmin; u8 scales[12]; u8 qs[128]}: sub-block j = i/32 has a 6-bit scale and
 *        min (K_SCALE_SIZE 12 bytes, get_scale_min_k4), q = (qs[32(j/2)+l] >> 4(j%2)) & 15,
 *        x = (d*sc_j)*q - dmin*m_j.   Q5_K {fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}:
 *        as Q4_K with bit j of qh[l] as the fifth bit.
 *   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d}: q = ((ql[64h + r%64] >> 4(r/64)) & 15 |
 *        ((qh[32h+l] >> 2s) & 3) << 4) - 32 with r = i%128; x = (d*scales[i/16])*q.
 *   IQ4_XS {fp16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}: sub-block j of 32 has the 6-bit
 *        scale ls = nibble j of scales_l | bits 2j..2j+1 of scales_h << 4, nibbles as IQ4_NL;
 *        x = (d*(ls-32))*kvalues_iq4nl[q].
 *   The k-quants need rows whose length is a multiple of 256 for the kernels (q4_weight_init).
 *   For the int8 path (q8.h) each 32 values of these types expand exactly to int8 codes with
 *   per-16 fp32 scales and mins (e.g. Q4_K: q = nibble, s = d*sc, m = -(dmin*m)); the table of
 *   all nine and why s*q + m repeats the decoder's roundings is at the top of q8_gguf.h.
 * Rows whose length n is not a multiple of the block are padded with zeros to a whole block, per
 * row, before quantisation. llama.cpp's GGUF needs n % 32 == 0, so a GGUF writer stores such a
 * matrix as [rows, round_up(n, 32)] with zero columns (the padded row is exactly what is stored
 * here) and the model code ignores the padded columns; for NF4 a bitsandbytes tensor whose rows
 * are not a multiple of B has blocks that straddle rows and must be re-blocked on load. */
/* clang-format on */
#ifndef LK_Q4_H
#define LK_Q4_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lorakit/core.h"
#include "lorakit/quant.h"

#define Q4_QK            32 /* values per GGUF block (Q4_0, IQ4_NL, Q8_0) */
#define Q4_NF4_BLOCK     64 /* bitsandbytes' default NF4 blocksize */
#define Q4_NF4_BLOCK_MIN 32 /* accepted NF4 blocksizes: powers of two in [32, 4096] */
#define Q4_NF4_BLOCK_MAX 4096
#define Q4_DQ_BLOCK      256 /* double quantisation: absmax values per nested block */

typedef struct {
    uint16_t d;     /* fp16 scale */
    uint8_t qs[16]; /* nibbles: low = value j, high = value j+16 */
} q4_block_q4_0;
static_assert(sizeof(q4_block_q4_0) == 18, "block_q4_0 must be 18 bytes as in ggml-common.h");

typedef struct {
    uint16_t d;
    uint8_t qs[16];
} q4_block_iq4_nl;
static_assert(sizeof(q4_block_iq4_nl) == 18, "block_iq4_nl must be 18 bytes as in ggml-common.h");

typedef struct {
    uint16_t d;
    int8_t qs[32];
} q4_block_q8_0;
static_assert(sizeof(q4_block_q8_0) == 34, "block_q8_0 must be 34 bytes as in ggml-common.h");

typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} q4_block_q4_1;
static_assert(sizeof(q4_block_q4_1) == 20, "block_q4_1 must be 20 bytes as in ggml-common.h");

typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} q4_block_q5_0;
static_assert(sizeof(q4_block_q5_0) == 22, "block_q5_0 must be 22 bytes as in ggml-common.h");

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} q4_block_q5_1;
static_assert(sizeof(q4_block_q5_1) == 24, "block_q5_1 must be 24 bytes as in ggml-common.h");

#define Q4_QK_K         256 /* values per k-quant super-block (ggml's QK_K) */
#define Q4_K_SCALE_SIZE 12  /* packed 6-bit scales and mins of Q4_K / Q5_K */

typedef struct {
    uint8_t scales[16]; /* low nibble scale, high nibble min, per 16 values */
    uint8_t qs[64];
    uint16_t d, dmin;
} q4_block_q2_k;
static_assert(sizeof(q4_block_q2_k) == 84, "block_q2_K must be 84 bytes as in ggml-common.h");

typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
} q4_block_q3_k;
static_assert(sizeof(q4_block_q3_k) == 110, "block_q3_K must be 110 bytes as in ggml-common.h");

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[Q4_K_SCALE_SIZE];
    uint8_t qs[128];
} q4_block_q4_k;
static_assert(sizeof(q4_block_q4_k) == 144, "block_q4_K must be 144 bytes as in ggml-common.h");

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[Q4_K_SCALE_SIZE];
    uint8_t qh[32];
    uint8_t qs[128];
} q4_block_q5_k;
static_assert(sizeof(q4_block_q5_k) == 176, "block_q5_K must be 176 bytes as in ggml-common.h");

typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} q4_block_q6_k;
static_assert(sizeof(q4_block_q6_k) == 210, "block_q6_K must be 210 bytes as in ggml-common.h");

typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
} q4_block_iq4_xs;
static_assert(sizeof(q4_block_iq4_xs) == 136, "block_iq4_xs must be 136 bytes as in ggml-common.h");

/* The 16 NF4 code values (bitsandbytes get_4bit_type("nf4"), as fp32). */
extern const float q4_nf4_code[16];
/* llama.cpp's kvalues_iq4nl. */
extern const int8_t q4_iq4nl_values[16];
/* bitsandbytes create_dynamic_map(signed=True): 256 sorted fp32 values in [-1, 1]. */
extern const float q4_dynamic_map[256];

/* ---- scalar conversions (static inline: each translation unit gets its own copy) ------------ */

/* fp32 -> IEEE fp16, round to nearest even, overflow to inf, NaN kept NaN (as F16C/ggml do). */
static inline uint16_t q4_fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep payload top bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x47800000u) /* >= 65536: inf (rounding of 65520..65536 handled below) */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {   /* below 2^-14: subnormal fp16 or zero */
        if (ax < 0x33000000u) /* < 2^-25: rounds to zero (2^-25 exactly ties to even 0) */
            return (uint16_t)sign;
        uint32_t e = ax >> 23; /* biased exponent, 102..112 */
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* value = m * 2^(e-150); fp16 ulp 2^-24 => shift 126-e */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent 127 -> 15 and round the 23-bit mantissa to 10 bits */
    uint32_t r = ax - 0x38000000u; /* (e-112)<<23 | m */
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1)))
        q++; /* a carry into the exponent is correct rounding, up to 0x7c00 = inf */
    return (uint16_t)(sign | q);
}

/* IEEE fp16 -> fp32 (exact). */
static inline float q4_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        x = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        x = sign;
    } else { /* subnormal: normalise */
        int sh = 0;
        while (!(m & 0x400u)) {
            m <<= 1;
            sh++;
        }
        x = sign | ((uint32_t)(113 - sh) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* fp32 -> bf16, round to nearest even, NaN forced quiet (ggml_compute_fp32_to_bf16). */
static inline uint16_t q4_fp32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 64);
    return (uint16_t)((x + (0x7fffu + ((x >> 16) & 1))) >> 16);
}

static inline float q4_bf16_to_fp32(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---- rows ----------------------------------------------------------------------------------- */

/* 1 if t is a supported type and block is valid for it (NF4: power of two in 32..4096; others:
 * ignored). */
int q4_valid(int qtype, int block);

/* 1 if lorakit can quantise to t: every type (F32 ... NF4 and the GGUF types Q4_1 ... IQ4_XS). */
int q4_can_quantize(int qtype);

/* 1 for the types with 256-value super-blocks (Q2_K..Q6_K, IQ4_XS). */
int q4_is_kquant(int qtype);

/* Values per block (32 for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL; 256 for the k-quants; `block`
 * for NF4; 1 for plain types). */
int64_t q4_block_len(int qtype, int block);

/* Bytes per block of a GGUF type (18 for Q4_0 ... 210 for Q6_K); 0 for plain types and NF4. */
size_t q4_block_bytes(int qtype);

/* Decode values [k0, k0+32) (k0 a multiple of 32) of the row at `row` of one of the types read
 * from GGUF files (Q4_1 .. IQ4_XS) into dst[32], exactly as gguf-py's dequantize_blocks. */
void q4_decode32_gguf(int qtype, const uint8_t *row, int64_t k0, float *dst);

/* Find the first stored block of rows[nrows][row_bytes] (a matrix of type qtype, rows of `in`
 * values; NF4 with blocksize `block`) whose scale or min is not finite (fp16 d / m / dmin of the
 * GGUF types, the fp32 absmax of NF4). Returns 0 when all are finite, else 1 with its row, its
 * block within the row, and the value in *row, *blk, *val. Plain types always pass. */
int q4_find_bad_scale(int qtype, int block, const void *rows, int64_t nrows, int64_t in,
                      int64_t *row, int64_t *blk, float *val);

/* Bytes of one stored row of n values; 0 if invalid. */
size_t q4_row_bytes(int qtype, int block, int64_t n);

/* Quantise x[n] into dst[q4_row_bytes] (bit-exact with the reference quantiser of the format). */
void q4_quantize_row(int qtype, int block, const float *x, int64_t n, void *dst);

/* Dequantise src[q4_row_bytes] into y[n] (padding dropped). */
void q4_dequantize_row(int qtype, int block, const void *src, int64_t n, float *y);

/* Per-format row quantisers (n a multiple of the block; the callers above do the padding). */
void q4_quantize_q4_0(const float *x, int64_t n, q4_block_q4_0 *y);
void q4_quantize_q8_0(const float *x, int64_t n, q4_block_q8_0 *y);
void q4_quantize_iq4_nl(const float *x, int64_t n, q4_block_iq4_nl *y);
/* The GGUF types of qk_quant.c (n a multiple of 32, or of 256 for the k-quants and IQ4_XS), each
 * bit-exact with ggml's quantize_row_*_ref / quantize_iq4_xs without importance weights. */
void q4_quantize_q4_1(const float *x, int64_t n, q4_block_q4_1 *y);
void q4_quantize_q5_0(const float *x, int64_t n, q4_block_q5_0 *y);
void q4_quantize_q5_1(const float *x, int64_t n, q4_block_q5_1 *y);
void q4_quantize_q2_k(const float *x, int64_t n, q4_block_q2_k *y);
void q4_quantize_q3_k(const float *x, int64_t n, q4_block_q3_k *y);
void q4_quantize_q4_k(const float *x, int64_t n, q4_block_q4_k *y);
void q4_quantize_q5_k(const float *x, int64_t n, q4_block_q5_k *y);
void q4_quantize_q6_k(const float *x, int64_t n, q4_block_q6_k *y);
void q4_quantize_iq4_xs(const float *x, int64_t n, q4_block_iq4_xs *y);
/* IQ4_NL's searched fp32 scale of one block of 32 (ggml's quantize_row_iq4_nl_impl, weights x²,
 * ntry 7; 0 for an all-zero block), and the index of the grid value nearest to x (ties up). */
float q4_iq4nl_block_scale(const float *xb);
int q4_iq4nl_index(float x);
/* NF4 of n values (n a multiple of block) -> codes[n/2] and absmax[n/block] (bitsandbytes). */
void q4_quantize_nf4(const float *x, int64_t n, int block, uint8_t *codes, float *absmax);
/* The NF4 code of one value already divided by absmax (bitsandbytes' comparison tree). */
uint8_t q4_nf4_index(float v);

/* ---- NF4 double quantisation (bitsandbytes compress_statistics=True) ---------------------- */

/* Storage form of n_absmax absmax values: offset = mean(absmax) (fp32 of a double sum);
 * codes[i] = dynamic-map index of (absmax[i]-offset)/scale[i/256], scale = max |.| per 256. */
typedef struct {
    int64_t n;      /* number of absmax values */
    uint8_t *codes; /* [n] */
    float *scale;   /* [ceil(n/256)] nested absmax */
    float offset;   /* the mean that was subtracted */
} q4_nf4_dq;

/* Quantise absmax[n] into dq (arrays caller-allocated: codes[n], scale[ceil(n/256)]). Needs no
 * work memory (one nested block at a time, on the stack). */
void q4_nf4_dq_quantize(const float *absmax, int64_t n, q4_nf4_dq *dq);
/* absmax[i] = dynamic_map[codes[i]]*scale[i/256] + offset, in fp32, as bitsandbytes computes. */
void q4_nf4_dq_dequantize(const q4_nf4_dq *dq, float *absmax);
/* Build NF4 rows (layout above) from bitsandbytes' flattened arrays of a [out, in] weight:
 * codes[out*in/2] (packed as bitsandbytes stores them) and absmax[out*in/block] (fp32, e.g. from
 * q4_nf4_dq_dequantize for a double-quantised state). Needs in % block == 0 so that no block
 * straddles two rows (LK_ERR_SHAPE otherwise: such a tensor must be dequantised and re-blocked).
 * dst gets out * q4_row_bytes(NF4, block, in) bytes. No re-quantisation: the values are bnb's. */
lk_status q4_nf4_from_bnb(const uint8_t *codes, const float *absmax, int64_t out, int64_t in,
                          int block, void *dst);
/* 8-bit blockwise quantisation with the dynamic map: x[n] -> codes[n], absmax[ceil(n/bs)]. */
void q4_quantize_dynamic(const float *x, int64_t n, int bs, uint8_t *codes, float *absmax);
/* Index of the dynamic-map value nearest to v in [-1,1] (bitsandbytes' dQuantize search). */
uint8_t q4_dynamic_index(float v);

/* ---- matrices ---------------------------------------------------------------------------------
 */

/* A quantised weight matrix W[out, in] in the row layout above; borrowed views, nothing owned. */
typedef struct {
    int qtype;        /* LK_QTYPE_Q4_0 / Q8_0 / IQ4_NL / NF4 */
    int block;        /* NF4 blocksize; 32 for the GGUF types */
    int64_t out, in;  /* logical shape (in excludes padding) */
    size_t row_bytes; /* q4_row_bytes(qtype, block, in) */
    const void *data; /* [out][row_bytes] */
    int ilv;          /* 1: whole groups of 16 rows interleaved for the int8 path (q8_ilv.h) */
} q4_weight;

/* Fill a descriptor; LK_ERR_ARG / LK_ERR_UNSUPPORTED with a message when invalid. */
lk_status q4_weight_init(q4_weight *w, int qtype, int block, int64_t out, int64_t in,
                         const void *data);

/* Quantise a whole f32 matrix src[out][in] into dst[out][q4_row_bytes] with n_threads threads
 * (deterministic: rows are independent). If rmse/max_abs are non-NULL, the round-trip error is
 * reported (RMSE over all values and max |x - deq(q(x))|). Needs no work memory (the error is
 * taken a span of each row at a time, on the stack). */
void q4_quantize_matrix(int qtype, int block, const float *src, int64_t out, int64_t in, void *dst,
                        int n_threads, double *rmse, double *max_abs);

/* Decode values [k0, k0+n) of row r into dst[n] (k0 a multiple of 32, k0+n <= padded row
 * length). The reference decoder every SIMD decoder is tested against. */
void q4_decode_ref(const q4_weight *w, int64_t r, int64_t k0, int64_t n, float *dst);

/* Decode values [k0, k0+n) of rows [r0, r0+nr) into dst[nr][ld] (k0 a multiple of 32, k0+n <= the
 * padded row length). Every decoder equals q4_decode_ref bit for bit (test_q8 checks). */
typedef void (*q4_decode_fn)(const q4_weight *w, int64_t r0, int64_t nr, int64_t k0, int64_t n,
                             float *dst, int64_t ld);
void q4_decode_rows_ref(const q4_weight *w, int64_t r0, int64_t nr, int64_t k0, int64_t n,
                        float *dst, int64_t ld);
/* AVX2 (q4_avx2.c): the decoders of the fused kernels (qk_avx2.h for the GGUF types). */
void q4_decode_rows_avx2(const q4_weight *w, int64_t r0, int64_t nr, int64_t k0, int64_t n,
                         float *dst, int64_t ld);

/* y[N] = W[N,K]·x[K] for an fp32 weight (decode with F32 weights), rows [0, N) one after another:
 * a single forward stream, which the hardware prefetcher follows from DRAM at about twice the rate
 * of a multi-row sgemv (OpenBLAS's: 15 GB/s against 35 on one thread of this Zen 4). Each row is
 * summed in 4 ymm chains of 8 lanes, then the chains and lanes in a fixed order, then the tail
 * (K % 32) in order: fp32 rounding of its own, within fp32 summation error of cblas_sgemv. */
typedef void (*q4_sgemv_fn)(int64_t N, int64_t K, const float *W, const float *x, float *y);
void q4_sgemv_avx2(int64_t N, int64_t K, const float *W, const float *x, float *y);

/* ---- kernels ----------------------------------------------------------------------------------
 */

/* Work memory. Kernels never allocate: the caller asks how many bytes a call needs
 * (q4_gemm_fwd_work / q4_gemm_bwd_work, as ggml_graph_plan reports work_size), allocates them once
 * and passes them to every call. The size for T rows covers every call with 1..T rows of that
 * weight shape (or fewer output rows) and the same thread count, so a caller plans for its longest
 * call; it includes the room to align the start to 64 bytes, so the buffer may have any alignment
 * (and may be NULL when the size is 0). The contents need not be initialised and are left
 * unspecified. Less than the size asked for is a broken invariant of the caller (LK_ASSERT). */
typedef size_t (*q4_work_fn)(const q4_weight *w, int64_t T, int n_threads);

/* Y[T,out] = X[T,in]·Wᵀ (+ bias[out] if non-NULL); work: see above. */
typedef void (*q4_fwd_fn)(const q4_weight *w, const float *bias, const float *X, int64_t T,
                          float *Y, int n_threads, void *work, size_t work_size);
/* dX[T,in] = dY[T,out]·W (overwrites dX). */
typedef void (*q4_bwd_fn)(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                          void *work, size_t work_size);

typedef struct {
    const char *name;
    q4_fwd_fn fwd;
    q4_bwd_fn bwd;
    q4_work_fn fwd_work, bwd_work; /* bytes of work fwd / bwd need */
    int bf16;       /* 1 if the variant rounds operands to bf16 (see q4_amx.c for the bound) */
    unsigned types; /* bit 1u << qtype for each weight type fwd / bwd accept */
} q4_kernels;

/* The weight types every variant has kernels for (the reference has all). */
#define Q4_TYPES_BASE \
    (1u << LK_QTYPE_Q4_0 | 1u << LK_QTYPE_Q8_0 | 1u << LK_QTYPE_IQ4_NL | 1u << LK_QTYPE_NF4)
#define Q4_TYPES_ALL                \
    (((1u << LK_QTYPE_COUNT) - 1) & \
     ~(1u << LK_QTYPE_F32 | 1u << LK_QTYPE_F16 | 1u << LK_QTYPE_BF16))

/* Variants; a variant's entry exists only where its file is compiled (LK_HAVE_*). */
void q4_gemm_fwd_ref(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                     int n_threads, void *work, size_t work_size);
void q4_gemm_bwd_ref(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                     void *work, size_t work_size);
size_t q4_gemm_fwd_work_ref(const q4_weight *w, int64_t T, int n_threads);
size_t q4_gemm_bwd_work_ref(const q4_weight *w, int64_t T, int n_threads);
void q4_gemm_fwd_avx2(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size);
void q4_gemm_bwd_avx2(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                      void *work, size_t work_size);
size_t q4_gemm_fwd_work_avx2(const q4_weight *w, int64_t T, int n_threads);
size_t q4_gemm_bwd_work_avx2(const q4_weight *w, int64_t T, int n_threads);
void q4_gemm_fwd_avx512(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                        int n_threads, void *work, size_t work_size);
void q4_gemm_bwd_avx512(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                        void *work, size_t work_size);
size_t q4_gemm_fwd_work_avx512(const q4_weight *w, int64_t T, int n_threads);
size_t q4_gemm_bwd_work_avx512(const q4_weight *w, int64_t T, int n_threads);
void q4_gemm_fwd_amx(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                     int n_threads, void *work, size_t work_size);
void q4_gemm_bwd_amx(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                     void *work, size_t work_size);
size_t q4_gemm_fwd_work_amx(const q4_weight *w, int64_t T, int n_threads);
size_t q4_gemm_bwd_work_amx(const q4_weight *w, int64_t T, int n_threads);
void q4_gemm_fwd_neon(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                      int n_threads, void *work, size_t work_size);
void q4_gemm_bwd_neon(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                      void *work, size_t work_size);
size_t q4_gemm_fwd_work_neon(const q4_weight *w, int64_t T, int n_threads);
size_t q4_gemm_bwd_work_neon(const q4_weight *w, int64_t T, int n_threads);

/* The table chosen for this CPU (after LK_KERNELS); detection runs once, thread-safely. Its
 * kernels may not cover every weight type: q4_gemm_* and the work queries go through
 * q4_kernels_for. */
const q4_kernels *q4_kernels_get(void);

/* 1 if this CPU and OS run `feature`: "avx2" (with FMA and F16C), "avx512" (F, BW, VL, DQ),
 * "amx", "neon", "avx512vnni" (with avx512), "dotprod" (AArch64 sdot/udot). */
int q4_cpu_has(const char *feature);

/* k if it has kernels for qtype, else the variant that stands in for it: on x86 AVX-512, then
 * AVX2 where compiled, runnable and having the type (AMX lacks the GGUF read-only types), else
 * the reference. */
const q4_kernels *q4_kernels_for(const q4_kernels *k, int qtype);

/* 1 if k's fwd / bwd accept weights of type qtype. */
static inline int q4_kernels_has(const q4_kernels *k, int qtype)
{
    return qtype >= 0 && qtype < LK_QTYPE_COUNT && (k->types >> qtype & 1u);
}

/* The table of a named variant if this build has it and this CPU runs it, else NULL. For tests
 * and benchmarks that compare variants. */
const q4_kernels *q4_kernels_named(const char *name);

/* Bytes of work variant k (through q4_kernels_for) needs for up to T rows of w on n_threads
 * threads (0 = all CPUs). */
size_t q4_gemm_fwd_work(const q4_kernels *k, const q4_weight *w, int64_t T, int n_threads);
size_t q4_gemm_bwd_work(const q4_kernels *k, const q4_weight *w, int64_t T, int n_threads);

/* The decoder of variant k: the AVX2 one for the x86 variants (avx2, avx512, amx) where this
 * build has it, else q4_decode_rows_ref (NEON's decoder is the reference's plain C). */
q4_decode_fn q4_decoder(const q4_kernels *k);
/* The fp32 GEMV of variant k: q4_sgemv_avx2 for the x86 variants where this build and CPU have
 * it, else NULL (the reference and NEON: callers keep cblas_sgemv). */
q4_sgemv_fn q4_sgemver(const q4_kernels *k);
/* y[N] = W[N,K]·x through q4_sgemver(q4_kernels_get()), on up to n_threads threads (0 = all) in
 * slices of whole rows (a row's result never depends on the split; small calls stay on the
 * calling thread). Returns 0, touching nothing, where that is NULL. */
int q4_sgemv(int64_t N, int64_t K, const float *W, const float *x, float *y, int n_threads);
/* Through q4_decoder(q4_kernels_get()). */
void q4_decode_rows(const q4_weight *w, int64_t r0, int64_t nr, int64_t k0, int64_t n, float *dst,
                    int64_t ld);

/* Through q4_kernels_for(q4_kernels_get(), w->qtype) (plan their work with
 * q4_gemm_*_work(q4_kernels_get(), ...)). */
void q4_gemm_fwd(const q4_weight *w, const float *bias, const float *X, int64_t T, float *Y,
                 int n_threads, void *work, size_t work_size);
void q4_gemm_bwd(const q4_weight *w, const float *dY, int64_t T, float *dX, int n_threads,
                 void *work, size_t work_size);

/* For the variants: a work buffer is carved into pieces of whole 64-byte lines (q4_line); a piece
 * each thread owns takes q4_slot bytes: its lines, then 4 KiB that no one touches, so that the
 * hardware prefetcher running past the end of one thread's piece does not pull in the lines
 * another thread is writing (pieces back to back cost the AVX-512 backward at T = 1 5-25% with 2
 * threads). q4_work_size(need) is the size a variant reports for `need` bytes of such pieces
 * (room to align the start added); q4_work_start(work, work_size, size) is the 64-byte aligned
 * start of the caller's buffer for a call whose reported size is `size` (NULL when 0), asserting
 * that the caller passed at least that much. */
static inline size_t q4_line(size_t bytes)
{
    return (bytes + 63) & ~(size_t)63;
}
static inline size_t q4_slot(size_t bytes)
{
    return q4_line(bytes) + 4096;
}
size_t q4_work_size(size_t need);
void *q4_work_start(void *work, size_t work_size, size_t size);

#endif /* LK_Q4_H */
