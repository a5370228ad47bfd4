/* tensor.h — the one tensor-view type: a name, a dtype, a shape and a pointer into memory that
 * someone else owns (usually a mapped file). */
#ifndef LK_TENSOR_H
#define LK_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 8

/* Element types of safetensors files (and of our own outputs). */
typedef enum {
    DT_F64,
    DT_F32,
    DT_F16,
    DT_BF16,
    DT_I64,
    DT_I32,
    DT_I16,
    DT_I8,
    DT_U64,
    DT_U32,
    DT_U16,
    DT_U8,
    DT_BOOL,
    DT_F8_E4M3,
    DT_F8_E5M2,
    DT_COUNT
} dtype;

typedef struct {
    const char *name; /* borrowed */
    dtype dt;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    const void *data; /* borrowed; nbytes bytes */
    size_t nbytes;
    const char *file; /* file holding the tensor (for messages) */
} tensor_view;

/* Bytes per element, safetensors name ("F32"), and name → dtype (-1 if unknown). */
size_t dtype_size(dtype dt);
const char *dtype_name(dtype dt);
int dtype_from_name(const char *s);

/* Element count (product of shape); the shape has been overflow-checked when loaded. */
int64_t tensor_numel(const tensor_view *t);

/* "[a, b, c]" into buf. */
const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t n);

/* Scalar conversions. */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f); /* round to nearest even, NaN kept quiet */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f); /* round to nearest even */

/* Convert n elements of a F32/F16/BF16 buffer to f32, with n_threads for large n. */
void convert_to_f32(dtype dt, const void *src, float *dst, int64_t n, int n_threads);

/* Index of the first NaN or Inf of x[n], or -1 when all are finite (quantisers need finite
 * input: callers refuse the rest with LK_ERR_NUMERIC naming the element). */
int64_t f32_first_nonfinite(const float *x, int64_t n);

#endif /* LK_TENSOR_H */
