/* tokenizer_pipeline.c — reading the pipeline of a Hugging Face tokenizer.json into the
 * tokenizer's step lists: normalizer (NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace),
 * pre_tokenizer (Split, ByteLevel, Digits, Metaspace), decoder (ByteLevel, ByteFallback, Fuse,
 * Replace, Strip, Metaspace), post_processor (TemplateProcessing, Roberta/BertProcessing); Sequence
 * everywhere. Also the JSON helpers of the tokenizer files. Calls into no other tokenizer file. */
#include "text/tokenizer_impl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/status.h"

lk_status tok_bad(const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return status_fail(LK_ERR_FORMAT, "%s: %s", path, msg);
}

lk_status tok_unsupported(const lk_tokenizer *t, const char *what, const char *type)
{
    return status_fail(LK_ERR_UNSUPPORTED,
                       "%s: %s type '%s' is not supported (supported: see lorakit/tokenizer.h)",
                       t->path, what, type ? type : "(missing)");
}

const char *tok_jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int tok_jbool(const cJSON *o, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

char *tok_strdup(const char *s, size_t *len)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    if (len)
        *len = n;
    return d;
}

/* Parse a normalizer (recursing into Sequence). */
lk_status tok_parse_normalizer(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = tok_jstr(j, "type");
    if (!type)
        return BAD(t, "normalizer: missing \"type\"");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(l))
            return BAD(t, "normalizer Sequence: \"normalizers\" is not an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, l) LK_TRY(tok_parse_normalizer(t, it));
        return LK_OK;
    }
    struct norm_step ns = {0};
    if (strcmp(type, "NFC") == 0)
        ns.kind = N_NFC;
    else if (strcmp(type, "NFD") == 0)
        ns.kind = N_NFD;
    else if (strcmp(type, "NFKC") == 0)
        ns.kind = N_NFKC;
    else if (strcmp(type, "NFKD") == 0)
        ns.kind = N_NFKD;
    else if (strcmp(type, "Lowercase") == 0)
        ns.kind = N_LOWER;
    else if (strcmp(type, "Prepend") == 0) {
        ns.kind = N_PREPEND;
        const char *p = tok_jstr(j, "prepend");
        if (!p)
            return BAD(t, "normalizer Prepend: missing \"prepend\"");
        if (!(ns.a = tok_strdup(p, &ns.alen)))
            return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    } else if (strcmp(type, "Replace") == 0) {
        ns.kind = N_REPLACE;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *c = tok_jstr(j, "content");
        const char *ps = tok_jstr(pat, "String");
        if (!ps && tok_jstr(pat, "Regex"))
            return tok_unsupported(t, "normalizer Replace pattern", "Regex");
        if (!ps || !c)
            return BAD(t, "normalizer Replace: needs pattern.String and content");
        ns.a = tok_strdup(ps, &ns.alen);
        ns.b = tok_strdup(c, &ns.blen);
        if (!ns.a || !ns.b) {
            free(ns.a);
            free(ns.b);
            return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
        }
    } else {
        return tok_unsupported(t, "normalizer", type);
    }
    return tok_add_norm(t, &ns);
}

lk_status tok_add_norm(lk_tokenizer *t, const struct norm_step *ns)
{
    lk_status s = BUF_GROW(&t->norm, &t->cap_norm, (size_t)t->n_norm + 1, "tokenizer: normalizers");
    if (s != LK_OK) {
        free(ns->a);
        free(ns->b);
        return s;
    }
    t->norm[t->n_norm++] = *ns;
    return LK_OK;
}

lk_status tok_compile_re(lk_tokenizer *t, const char *pat, size_t len, int literal, uint32_t opts,
                         pcre2_code **out)
{
    int err;
    PCRE2_SIZE eoff;
    opts |= PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return BAD(t, "pre-tokenizer regex does not compile at offset %zu: %s", (size_t)eoff,
                   (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if no JIT */
    *out = re;
    return LK_OK;
}

static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

lk_status tok_add_pre(lk_tokenizer *t, const struct pre_step *ps)
{
    lk_status s = BUF_GROW(&t->pre, &t->cap_pre, (size_t)t->n_pre + 1, "tokenizer: pre-tokenizers");
    if (s != LK_OK) {
        pcre2_code_free(ps->re);
        return s;
    }
    t->pre[t->n_pre++] = *ps;
    return LK_OK;
}

static int parse_prepend_scheme(const cJSON *j, int *out)
{
    const char *s = tok_jstr(j, "prepend_scheme");
    if (!s) {
        *out = tok_jbool(j, "add_prefix_space", 1) ? PS_ALWAYS : PS_NEVER;
        return 0;
    }
    if (strcmp(s, "always") == 0)
        *out = PS_ALWAYS;
    else if (strcmp(s, "first") == 0)
        *out = PS_FIRST;
    else if (strcmp(s, "never") == 0)
        *out = PS_NEVER;
    else
        return -1;
    return 0;
}

static lk_status parse_metaspace_repl(lk_tokenizer *t, const cJSON *j, char *buf, size_t *len)
{
    const char *r = tok_jstr(j, "replacement");
    if (!r)
        r = "\xe2\x96\x81";
    size_t n = strlen(r);
    if (n == 0 || n >= 8)
        return BAD(t, "Metaspace: replacement must be one character");
    memcpy(buf, r, n + 1);
    *len = n;
    return LK_OK;
}

lk_status tok_parse_pretokenizer(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = tok_jstr(j, "type");
    if (!type)
        return BAD(t, "pre_tokenizer: missing \"type\"");
    struct pre_step ps = {0};
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(l))
            return BAD(t, "pre_tokenizer Sequence: \"pretokenizers\" is not an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, l) LK_TRY(tok_parse_pretokenizer(t, it));
        return LK_OK;
    } else if (strcmp(type, "Split") == 0) {
        ps.kind = P_SPLIT;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *re = tok_jstr(pat, "Regex"), *str = tok_jstr(pat, "String");
        const char *beh = tok_jstr(j, "behavior");
        if (!re && !str)
            return BAD(t, "pre_tokenizer Split: pattern needs \"Regex\" or \"String\"");
        if (tok_jbool(j, "invert", 0))
            return tok_unsupported(t, "pre_tokenizer Split with invert", "true");
        static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        ps.behavior = -1;
        for (int i = 0; beh && i < 5; i++)
            if (strcmp(beh, names[i]) == 0)
                ps.behavior = i;
        if (ps.behavior < 0)
            return BAD(t, "pre_tokenizer Split: unknown behavior '%s'", beh ? beh : "(missing)");
        LK_TRY(tok_compile_re(t, re ? re : str, strlen(re ? re : str), !re, 0, &ps.re));
    } else if (strcmp(type, "ByteLevel") == 0) {
        ps.kind = P_BYTELEVEL;
        ps.add_prefix_space = tok_jbool(j, "add_prefix_space", 1);
        ps.behavior = B_ISOLATED;
        if (tok_jbool(j, "use_regex", 1))
            LK_TRY(tok_compile_re(t, gpt2_regex, sizeof gpt2_regex - 1, 0, 0, &ps.re));
        t->bpe.byte_level = 1;
    } else if (strcmp(type, "Digits") == 0) {
        /* Rust's char::is_numeric is \p{N}; runs of them stay together unless individual */
        static const char one[] = "\\p{N}", run[] = "\\p{N}+";
        int indiv = tok_jbool(j, "individual_digits", 0);
        ps.kind = P_SPLIT;
        ps.behavior = B_ISOLATED;
        LK_TRY(tok_compile_re(t, indiv ? one : run, indiv ? sizeof one - 1 : sizeof run - 1, 0, 0,
                              &ps.re));
    } else if (strcmp(type, "Metaspace") == 0) {
        ps.kind = P_METASPACE;
        LK_TRY(parse_metaspace_repl(t, j, ps.repl, &ps.repl_len));
        if (parse_prepend_scheme(j, &ps.prepend_scheme))
            return BAD(t, "Metaspace: unknown prepend_scheme");
        ps.split = tok_jbool(j, "split", 1);
    } else {
        return tok_unsupported(t, "pre_tokenizer", type);
    }
    return tok_add_pre(t, &ps);
}

static lk_status add_dec(lk_tokenizer *t, struct dec_step *d)
{
    lk_status s = BUF_GROW(&t->dec, &t->cap_dec, (size_t)t->n_dec + 1, "tokenizer: decoders");
    if (s != LK_OK) {
        free(d->a);
        free(d->b);
        return s;
    }
    t->dec[t->n_dec++] = *d;
    return LK_OK;
}

lk_status tok_parse_decoder(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = tok_jstr(j, "type");
    if (!type)
        return BAD(t, "decoder: missing \"type\"");
    struct dec_step d = {0};
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(l))
            return BAD(t, "decoder Sequence: \"decoders\" is not an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, l) LK_TRY(tok_parse_decoder(t, it));
        return LK_OK;
    } else if (strcmp(type, "ByteLevel") == 0) {
        d.kind = D_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d.kind = D_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d.kind = D_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d.kind = D_REPLACE;
        const char *ps = tok_jstr(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "String");
        const char *c = tok_jstr(j, "content");
        if (!ps || !c)
            return BAD(t, "decoder Replace: needs pattern.String and content");
        d.a = tok_strdup(ps, &d.alen);
        d.b = tok_strdup(c, &d.blen);
    } else if (strcmp(type, "Strip") == 0) {
        d.kind = D_STRIP;
        const char *c = tok_jstr(j, "content");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "stop");
        if (!c || !cJSON_IsNumber(st) || !cJSON_IsNumber(sp))
            return BAD(t, "decoder Strip: needs content, start and stop");
        d.a = tok_strdup(c, &d.alen);
        d.start = st->valueint;
        d.stop = sp->valueint;
    } else if (strcmp(type, "Metaspace") == 0) {
        d.kind = D_METASPACE;
        char r[8];
        size_t rl;
        LK_TRY(parse_metaspace_repl(t, j, r, &rl));
        if (parse_prepend_scheme(j, &d.prepend_scheme))
            return BAD(t, "decoder Metaspace: unknown prepend_scheme");
        d.a = tok_strdup(r, &d.alen);
        d.b = tok_strdup(" ", &d.blen);
    } else {
        return tok_unsupported(t, "decoder", type);
    }
    if ((d.kind == D_REPLACE || d.kind == D_STRIP || d.kind == D_METASPACE) && !d.a) {
        free(d.b);
        return status_fail(LK_ERR_NOMEM, "tokenizer: out of memory");
    }
    return add_dec(t, &d);
}

/* TemplateProcessing (single), Roberta/BertProcessing, ByteLevel (offsets only), Sequence. */
lk_status tok_parse_post(lk_tokenizer *t, const cJSON *j)
{
    if (!j || cJSON_IsNull(j))
        return LK_OK;
    const char *type = tok_jstr(j, "type");
    if (!type)
        return BAD(t, "post_processor: missing \"type\"");
    if (strcmp(type, "ByteLevel") == 0)
        return LK_OK;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "processors"))
            LK_TRY(tok_parse_post(t, it));
        return LK_OK;
    }
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(j, "sep");
        const cJSON *ci = cJSON_GetArrayItem(cls, 1), *si = cJSON_GetArrayItem(sep, 1);
        if (!cJSON_IsNumber(ci) || !cJSON_IsNumber(si))
            return BAD(t, "post_processor %s: cls/sep must be [token, id]", type);
        t->tmpl_pre[0] = ci->valueint, t->n_tmpl_pre = 1;
        t->tmpl_post[0] = si->valueint, t->n_tmpl_post = 1;
        return LK_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return tok_unsupported(t, "post_processor", type);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    if (!cJSON_IsArray(single))
        return BAD(t, "post_processor TemplateProcessing: \"single\" is not an array");
    int seen_a = 0;
    t->n_tmpl_pre = t->n_tmpl_post = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, single)
    {
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
            seen_a = 1;
            continue;
        }
        const char *name = tok_jstr(cJSON_GetObjectItemCaseSensitive(it, "SpecialToken"), "id");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(specials, name ? name : ""), "ids");
        if (!name || !cJSON_IsArray(ids))
            return BAD(t, "post_processor TemplateProcessing: special token '%s' undefined",
                       name ? name : "(missing)");
        const cJSON *x;
        cJSON_ArrayForEach(x, ids)
        {
            int *cnt = seen_a ? &t->n_tmpl_post : &t->n_tmpl_pre;
            int32_t *dst = seen_a ? t->tmpl_post : t->tmpl_pre;
            if (!cJSON_IsNumber(x) || *cnt >= 4)
                return BAD(t, "post_processor TemplateProcessing: bad ids for '%s'", name);
            dst[(*cnt)++] = x->valueint;
        }
    }
    return LK_OK;
}
