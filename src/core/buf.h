/* buf.h — the one growable buffer of the library: an array that grows by doubling (buf_grow),
 * the same for parallel arrays sharing one capacity (buf_grow_all), and a byte string appended to
 * (struct buf). Sizes are checked against size_t overflow, and a failure
 * is LK_ERR_NOMEM with a message naming what was growing; the array is then left as it was (still
 * owned by the caller, who frees it as usual). */
#ifndef LK_BUF_H
#define LK_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "lorakit/core.h"

/* Capacity, in elements, to grow to from cap so that need fit: cap doubled (starting from 16)
 * until it holds need; need itself where doubling would overflow. */
size_t buf_next_cap(size_t cap, size_t need);

/* Resize the array *pp (pp is a T **, passed as void *) to n elements of elem bytes, keeping its
 * contents. LK_ERR_NOMEM "WHAT: out of memory ..." when n·elem overflows or realloc fails; *pp
 * is unchanged then. */
lk_status buf_resize(void *pp, size_t n, size_t elem, const char *what);

/* buf_grow's slow path: resize *pp to buf_next_cap(*cap, need) elements and set *cap. */
lk_status buf_grow_to(void *pp, size_t *cap, size_t need, size_t elem, const char *what);

/* Make the array *pp, with room for *cap elements of elem bytes, hold at least need elements
 * (doubling): nothing to do when it already does. */
static inline lk_status buf_grow(void *pp, size_t *cap, size_t need, size_t elem, const char *what)
{
    return need <= *cap ? LK_OK : buf_grow_to(pp, cap, need, elem, what);
}

/* The same with the element size taken from the array's type: BUF_GROW(&a->ids, &a->cap, n + 1,
 * "dataset: token ids"). */
#define BUF_GROW(pp, cap, need, what) buf_grow((pp), (cap), (need), sizeof **(pp), (what))
#define BUF_RESIZE(pp, n, what)       buf_resize((pp), (n), sizeof **(pp), (what))

/* Parallel arrays sharing one capacity: each is grown to the same new capacity (an array already
 * grown when a later one fails is merely larger than *cap). BUF_ARR(&p) describes array p. */
struct buf_arr {
    void *pp;    /* a T ** */
    size_t elem; /* sizeof(T) */
};
#define BUF_ARR(pp) ((struct buf_arr){(pp), sizeof **(pp)})

/* buf_grow_all's slow path. */
lk_status buf_grow_all_to(const struct buf_arr *a, int n, size_t *cap, size_t need,
                          const char *what);

/* Make the n arrays of a, with room for *cap elements each, hold at least need elements. */
static inline lk_status buf_grow_all(const struct buf_arr *a, int n, size_t *cap, size_t need,
                                     const char *what)
{
    return need <= *cap ? LK_OK : buf_grow_all_to(a, n, cap, need, what);
}

/* A growable byte string: p[0..n) written, room for cap. Zero-initialise; free with buf_free. */
struct buf {
    uint8_t *p;
    size_t n, cap;
};

/* Make room for more bytes after p[n) (written by the caller, who then adds them to n). */
lk_status buf_reserve(struct buf *b, size_t more, const char *what);

/* Append n bytes of src (src may be NULL when n is 0). */
lk_status buf_put(struct buf *b, const void *src, size_t n, const char *what);

void buf_free(struct buf *b);

#endif /* LK_BUF_H */
