/* json.c — see json.h. One pass over the bytes finds what cJSON would accept but a JSON reader
 * must not (invalid UTF-8, which Python's json and serde_json refuse; NUL in strings; nesting
 * beyond cJSON's limit, reported as such instead of a bare syntax error), then cJSON parses and
 * anything after the value is refused, as Python's json.loads does ("Extra data"). */
#include "core/json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
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

/* ---- writing as Python does ---- */

/* s as json.dumps(s, ensure_ascii=False) quotes it: ", \ and the control characters escaped
 * (\n \r \t \b \f by name, others as \u00xx), every other character as it is. */
static lk_status dump_string(const char *s, struct buf *b)
{
    static const char hex[] = "0123456789abcdef";
    LK_TRY(buf_put(b, "\"", 1, "JSON text"));
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8] = {'\\', 0};
        size_t n = 2;
        switch (*p) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        default:
            if (*p >= 0x20) {
                e[0] = (char)*p;
                n = 1;
            } else {
                memcpy(e + 1, "u00", 3);
                e[4] = hex[*p >> 4];
                e[5] = hex[*p & 15];
                n = 6;
            }
        }
        LK_TRY(buf_put(b, e, n, "JSON text"));
    }
    return buf_put(b, "\"", 1, "JSON text");
}

/* A number as Python writes it: an integral value as an int (cJSON does not keep whether the
 * text had a fraction: 5.0 comes out as 5), otherwise float.__repr__: the shortest digits that
 * read back to the same double, fixed-point for decimal exponents -4..15 (with ".0" when
 * integral), else d.ddde±XX. */
static lk_status dump_number(double v, struct buf *b)
{
    char out[40];
    if (!isfinite(v))
        snprintf(out, sizeof out, "%s", isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    else if (v == floor(v) && fabs(v) < 1e16)
        snprintf(out, sizeof out, "%.0f", v);
    else {
        char e[40];
        int p = 1;
        for (; p < 17; p++) { /* the shortest round trip */
            snprintf(e, sizeof e, "%.*e", p - 1, v);
            if (strtod(e, NULL) == v)
                break;
        }
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        char *x = strchr(e, 'e'), digits[24];
        int exp = atoi(x + 1), nd = 0, neg = e[0] == '-';
        for (char *c = e + neg; c < x; c++)
            if (*c != '.')
                digits[nd++] = *c;
        digits[nd] = 0;
        char *o = out;
        if (neg)
            *o++ = '-';
        if (exp < -4 || exp >= 16) {
            o += sprintf(o, "%c", digits[0]);
            if (nd > 1)
                o += sprintf(o, ".%s", digits + 1);
            sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        } else if (exp < 0) { /* 0.000ddd */
            o += sprintf(o, "0.");
            for (int i = -1; i > exp; i--)
                *o++ = '0';
            sprintf(o, "%s", digits);
        } else {
            for (int i = 0; i <= exp; i++)
                *o++ = i < nd ? digits[i] : '0';
            *o = 0;
            sprintf(o, ".%s", nd > exp + 1 ? digits + exp + 1 : "0");
        }
    }
    return buf_put(b, out, strlen(out), "JSON text");
}

static lk_status dump_newline(int indent, int depth, struct buf *b)
{
    LK_TRY(buf_put(b, "\n", 1, "JSON text"));
    for (int i = 0; i < indent * depth; i++)
        LK_TRY(buf_put(b, " ", 1, "JSON text"));
    return LK_OK;
}

static lk_status dump_value(const cJSON *v, int indent, int depth, struct buf *b);

/* An array or object: items separated by ", " (or "," and a new line with an indent). */
static lk_status dump_items(const cJSON *v, int indent, int depth, struct buf *b)
{
    int obj = cJSON_IsObject(v);
    LK_TRY(buf_put(b, obj ? "{" : "[", 1, "JSON text"));
    for (const cJSON *c = v->child; c; c = c->next) {
        if (indent > 0)
            LK_TRY(dump_newline(indent, depth + 1, b));
        if (obj) {
            LK_TRY(dump_string(c->string, b));
            LK_TRY(buf_put(b, ": ", 2, "JSON text"));
        }
        LK_TRY(dump_value(c, indent, depth + 1, b));
        if (c->next)
            LK_TRY(buf_put(b, indent > 0 ? "," : ", ", indent > 0 ? 1 : 2, "JSON text"));
    }
    if (indent > 0 && v->child)
        LK_TRY(dump_newline(indent, depth, b));
    return buf_put(b, obj ? "}" : "]", 1, "JSON text");
}

static lk_status dump_value(const cJSON *v, int indent, int depth, struct buf *b)
{
    if (cJSON_IsString(v))
        return dump_string(v->valuestring, b);
    if (cJSON_IsNumber(v))
        return dump_number(v->valuedouble, b);
    if (cJSON_IsBool(v))
        return buf_put(b, cJSON_IsTrue(v) ? "true" : "false", cJSON_IsTrue(v) ? 4 : 5, "JSON text");
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return dump_items(v, indent, depth, b);
    return buf_put(b, "null", 4, "JSON text");
}

lk_status json_dump_py(const cJSON *v, int indent, struct buf *b)
{
    return dump_value(v, indent, 0, b);
}
