/* json.c — see json.h. One pass over the bytes finds what cJSON would accept but a JSON reader
 * must not (invalid UTF-8, which Python's json and serde_json refuse; NUL in strings; nesting
 * beyond cJSON's limit, reported as such instead of a bare syntax error), then cJSON parses and
 * anything after the value is refused, as Python's json.loads does ("Extra data"). */
#include "core/json.h"

#include <stdint.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/status.h"
#include "core/utf8.h"

static lk_status bad(const char *what, const char *why, size_t at)
{
    return status_fail(LK_ERR_FORMAT, "%s: not valid JSON: %s at byte %zu", what, why, at);
}

/* The checks cJSON does not make; LK_OK or the first problem. */
static lk_status scan(const char *what, const uint8_t *s, size_t n)
{
    int in_str = 0, depth = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        uint32_t cp;
        int k = c < 0x80 ? 1 : utf8_next(s + i, n - i, &cp);
        if (k == 0)
            return bad(what, "invalid UTF-8", i);
        if (in_str && c < 0x20)
            return bad(what, "a control character inside a string", i);
        if (in_str && c == '\\') {
            if (i + 1 < n && s[i + 1] == 'u' && n - i >= 6 && !memcmp(s + i + 2, "0000", 4))
                return bad(what, "a NUL character (\\u0000) in a string", i);
            i += i + 1 < n && s[i + 1] < 0x80 ? 2 : 1; /* the escaped character, if ASCII */
            continue;
        }
        if (c == '"')
            in_str = !in_str;
        else if (!in_str && (c == '[' || c == '{') && ++depth > CJSON_NESTING_LIMIT)
            return status_fail(LK_ERR_FORMAT,
                               "%s: not valid JSON: nested deeper than %d levels at byte %zu", what,
                               CJSON_NESTING_LIMIT, i);
        else if (!in_str && (c == ']' || c == '}'))
            depth--;
        i += (size_t)k;
    }
    return LK_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* No object holds a key twice (Python's json keeps the last, cJSON the first: refuse the
 * ambiguity), checked by sorting each object's keys: O(n log n) however many keys a file has. */
static lk_status check_keys(const char *what, const cJSON *j)
{
    int n = 0;
    for (const cJSON *c = j->child; c; c = c->next)
        n++;
    if (cJSON_IsObject(j) && n > 1) {
        const char **k = malloc((size_t)n * sizeof *k);
        if (!k)
            return status_fail(LK_ERR_NOMEM, "%s: out of memory", what);
        n = 0;
        for (const cJSON *c = j->child; c; c = c->next)
            k[n++] = c->string;
        qsort(k, (size_t)n, sizeof *k, cmp_key);
        for (int i = 1; i < n; i++)
            if (strcmp(k[i], k[i - 1]) == 0) {
                lk_status s = status_fail(LK_ERR_FORMAT, "%s: key '%s' appears twice", what, k[i]);
                free(k);
                return s;
            }
        free(k);
    }
    for (const cJSON *c = j->child; c; c = c->next)
        if (c->child)
            LK_TRY(check_keys(what, c));
    return LK_OK;
}

lk_status json_parse(const char *what, const char *text, size_t len, cJSON **out)
{
    *out = NULL;
    LK_TRY(scan(what, (const uint8_t *)text, len));
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    if (!j)
        return bad(what, at + 1 >= len ? "unexpected end (truncated?)" : "syntax error", at);
    while (at < len && strchr(" \t\r\n", text[at]) && text[at])
        at++;
    if (at < len) {
        cJSON_Delete(j);
        return bad(what, "more data after the value", at);
    }
    lk_status s = check_keys(what, j);
    if (s != LK_OK) {
        cJSON_Delete(j);
        return s;
    }
    *out = j;
    return LK_OK;
}

lk_status json_read_file(const char *path, size_t max_size, cJSON **out)
{
    char *text = NULL;
    size_t n = 0;
    *out = NULL;
    LK_TRY(read_text_file(path, max_size, &text, &n));
    lk_status s = json_parse(path, text, n, out);
    free(text);
    return s;
}
