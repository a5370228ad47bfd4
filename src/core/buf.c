/* buf.c — growable arrays and byte strings (buf.h): capacity doubling, overflow-checked sizes,
 * LK_ERR_NOMEM naming what was growing. */
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define BUF_FIRST_CAP 16 /* elements of a first allocation */

size_t buf_next_cap(size_t cap, size_t need)
{
    size_t c = cap ? cap : BUF_FIRST_CAP;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return need;
        c *= 2;
    }
    return c;
}

lk_status buf_resize(void *pp, size_t n, size_t elem, const char *what)
{
    if (elem && n > SIZE_MAX / elem)
        return status_fail(LK_ERR_NOMEM,
                           "%s: cannot grow to %zu elements of %zu bytes: the size overflows", what,
                           n, elem);
    void *old, *p;
    memcpy(&old, pp, sizeof old); /* pp points at a T *: read it without type punning */
    p = realloc(old, n && elem ? n * elem : 1);
    if (!p)
        return status_fail(LK_ERR_NOMEM, "%s: out of memory growing to %zu bytes (%zu elements)",
                           what, n * elem, n);
    memcpy(pp, &p, sizeof p);
    return LK_OK;
}

lk_status buf_grow_to(void *pp, size_t *cap, size_t need, size_t elem, const char *what)
{
    size_t c = buf_next_cap(*cap, need);
    LK_TRY(buf_resize(pp, c, elem, what));
    *cap = c;
    return LK_OK;
}

lk_status buf_grow_all_to(const struct buf_arr *a, int n, size_t *cap, size_t need,
                          const char *what)
{
    size_t c = buf_next_cap(*cap, need);
    for (int i = 0; i < n; i++)
        LK_TRY(buf_resize(a[i].pp, c, a[i].elem, what));
    *cap = c;
    return LK_OK;
}

lk_status buf_reserve(struct buf *b, size_t more, const char *what)
{
    if (more > SIZE_MAX - b->n)
        return status_fail(LK_ERR_NOMEM, "%s: cannot grow past %zu + %zu bytes: the size overflows",
                           what, b->n, more);
    return BUF_GROW(&b->p, &b->cap, b->n + more, what);
}

lk_status buf_put(struct buf *b, const void *src, size_t n, const char *what)
{
    if (n == 0) /* src may be NULL */
        return LK_OK;
    LK_TRY(buf_reserve(b, n, what));
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return LK_OK;
}

void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
