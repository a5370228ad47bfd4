/* gguf.h — GGUF v3 files (llama.cpp's model and adapter container): a reader that validates
 * everything before use (mmap + bounds checks) and a streaming, atomic writer.
 * Layout (ggml/docs/gguf.md): "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv × (string key,
 * u32 value type, value), n_tensors × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
 * u64 offset), padding to general.alignment (default 32), data. Strings are u64 length + bytes
 * (no NUL). ne[0] is the fastest-varying dimension: a PyTorch [out, in] matrix has ne = {in, out}.
 * Little-endian only, like every GGUF file in circulation. */
#ifndef LK_GGUF_H
#define LK_GGUF_H

#include <stdint.h>

#include "core/mapfile.h"

#define GGUF_MAGIC             "GGUF"
#define GGUF_VERSION           3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS          4
#define GGUF_MAX_NAME          64 /* llama.cpp's GGML_MAX_NAME, terminator included */

/* Metadata value types (gguf_type in ggml). */
typedef enum {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_NTYPES = 13
} gguf_vtype;

/* Tensor types, numbered as llama.cpp's ggml_type (gguf-py GGMLQuantizationType). Only the ones
 * lorakit reads or writes are listed; a type missing from gguf_type_info is refused by name. */
typedef enum {
    GGML_F32 = 0,
    GGML_F16 = 1,
    GGML_Q4_0 = 2,
    GGML_Q4_1 = 3,
    GGML_Q5_0 = 6,
    GGML_Q5_1 = 7,
    GGML_Q8_0 = 8,
    GGML_Q2_K = 10,
    GGML_Q3_K = 11,
    GGML_Q4_K = 12,
    GGML_Q5_K = 13,
    GGML_Q6_K = 14,
    GGML_IQ4_NL = 20,
    GGML_IQ4_XS = 23,
    GGML_BF16 = 30
} ggml_type;

/* Block layout of a tensor type: blck elements take size bytes. to_f32/from_f32 convert one row
 * (n a multiple of blck), bit-exact with ggml's dequantisation and its quantisers without an
 * importance matrix. qtype is the matching lk_qtype (the layouts are the same: quant/q4.h), for
 * the fused kernels. */
typedef struct {
    const char *name;
    int64_t blck;
    int64_t size;
    void (*to_f32)(const void *src, float *dst, int64_t n);
    void (*from_f32)(const float *src, void *dst, int64_t n);
    int qtype;
} gguf_type_traits;

/* Traits of type t, or NULL if t is not a type lorakit knows. */
const gguf_type_traits *gguf_type_info(uint32_t t);

/* The ggml type whose layout is lk_qtype qtype's (F32 for NF4, which GGUF lacks). */
uint32_t gguf_type_of(int qtype);

/* The type llama-quantize stores a matrix of rows of ncols values in when t is asked for: t if
 * ncols is a multiple of its block, else its fallback (IQ4_XS -> IQ4_NL, Q2_K/Q3_K -> Q4_0,
 * Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; llama-quant.cpp tensor_type_fallback), and F16 when
 * that does not fit either. */
uint32_t gguf_type_fallback(uint32_t t, int64_t ncols);

/* Bytes of a row of n elements of type t (n a multiple of the block); -1 if not. */
int64_t gguf_row_size(uint32_t t, int64_t n);

typedef struct {
    const char *ptr; /* into the mapped file, not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct {
    char *key; /* owned, NUL-terminated */
    gguf_vtype type;
    union {
        uint64_t u; /* U8..U64, BOOL */
        int64_t i;  /* I8..I64 */
        double f;   /* F32, F64 */
    } v;
    gguf_str str;            /* GGUF_STRING */
    gguf_vtype arr_type;     /* GGUF_ARRAY: element type */
    uint64_t arr_n;          /* GGUF_ARRAY: element count */
    const uint8_t *arr_data; /* numeric arrays: arr_n packed elements in the file */
    gguf_str *arr_str;       /* string arrays: [arr_n], owned */
} gguf_kv;

typedef struct {
    char *name; /* owned, NUL-terminated */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1 */
    uint32_t type;
    uint64_t offset;     /* relative to the data section */
    const uint8_t *data; /* into the mapping */
    uint64_t nbytes;
} gguf_tensor;

/* A name and the index of its entry, for sorted lookups. */
typedef struct {
    const char *name; /* borrowed from the entry */
    int64_t i;
} gguf_name;

typedef struct {
    mapfile map;
    uint32_t version;
    gguf_kv *kv;
    int64_t n_kv;
    gguf_tensor *tensors;
    int64_t n_tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the data section in the file */
    gguf_name *kv_sorted; /* [n_kv] by key, and [n_tensors] by name: O(log n) lookups and */
    gguf_name *t_sorted;  /* duplicate checks in O(n log n), whatever a file declares */
} gguf_file;

/* Open and validate path: magic, version (2 or 3; 1 is too old, > 3 too new), counts within the
 * file, string lengths, keys unique and non-empty, value types, no nested arrays, alignment a power
 * of two, tensor names unique and < GGUF_MAX_NAME, 1..4 dims each > 0 with the element count
 * overflow-checked, known types, ne[0] a multiple of the block, offsets aligned, inside the file
 * and not overlapping. */
lk_status gguf_open(gguf_file *f, const char *path);

/* Open path for its metadata only: the header and key/value pairs, validated as gguf_open does;
 * the tensor infos are not read (n_tensors is 0), so a file whose tensor types lorakit does not
 * know still yields its metadata (a tokenizer, say). */
lk_status gguf_open_meta(gguf_file *f, const char *path);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* A quantised tensor whose stored scales (fp16 d, and m / dmin where the type has one, k-quant
 * super-blocks included) are all finite; LK_ERR_FORMAT naming the file, tensor, type, row and
 * block otherwise. LK_OK for float types. */
lk_status gguf_check_scales(const gguf_file *f, const gguf_tensor *t);

/* Typed getters: LK_ERR_FORMAT naming the key if it is missing or of another type; integer
 * getters accept any integer type whose value fits. *out is a heap copy for strings. */
lk_status gguf_get_str(const gguf_file *f, const char *key, char **out);
lk_status gguf_get_f64(const gguf_file *f, const char *key, double *out);
lk_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);

/* ---- writing ---- */

typedef struct gguf_writer gguf_writer;

/* A writer collecting metadata and tensor descriptions; gguf_writer_write emits the file. */
lk_status gguf_writer_new(gguf_writer **out);
void gguf_writer_free(gguf_writer *w);

/* Metadata, written in call order. Keys must be unique (LK_ERR_ARG otherwise). */
lk_status gguf_set_str(gguf_writer *w, const char *key, const char *val);
lk_status gguf_set_u32(gguf_writer *w, const char *key, uint32_t val);
lk_status gguf_set_i32(gguf_writer *w, const char *key, int32_t val);
lk_status gguf_set_f32(gguf_writer *w, const char *key, float val);
lk_status gguf_set_bool(gguf_writer *w, const char *key, int val);
/* Array of n numeric elements of type t (packed little-endian in data). */
lk_status gguf_set_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data, uint64_t n);
lk_status gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *vals, uint64_t n);

/* Copy a key/value pair read by gguf_open (any type, arrays included) as it was in its file. */
lk_status gguf_copy_kv(gguf_writer *w, const gguf_kv *kv);

/* A tensor of type t with ne[0..n_dims) (ne[0] fastest). data: its bytes (borrowed until the
 * write), or NULL to have the fill callback produce them. */
lk_status gguf_add_tensor(gguf_writer *w, const char *name, uint32_t t, int n_dims,
                          const int64_t *ne, const void *data);

/* fill(user, i, dst): produce tensor i's bytes (gguf_tensor_nbytes) into dst. Called in order,
 * one tensor at a time, so memory stays at the largest tensor. Written to a temporary name and
 * renamed when complete; an existing path is replaced only with force. */
typedef lk_status (*gguf_fill_fn)(void *user, int64_t i, void *dst);
lk_status gguf_writer_write(gguf_writer *w, const char *path, int force, gguf_fill_fn fill,
                            void *user);

#endif /* LK_GGUF_H */
