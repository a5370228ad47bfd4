/* llama_tok_dump.c — llama.cpp's own tokenizer over a ggml-vocab style .inp file, for
 * gen_gguf_tok.py (not part of the build). Compiled by the generator against llama.cpp's
 * include/llama.h and libllama.so:
 *     llama_tok_dump MODEL.gguf INPUT.inp PREFIX
 * loads MODEL's vocabulary only (vocab_only, as llama-tokenize does) and writes, for every string
 * of INPUT (each followed by "\n__ggml_vocab_test__\n"):
 *   PREFIX.out      ids of llama_tokenize(add_special=false, parse_special=true), one line each
 *   PREFIX.outs     ids of llama_tokenize(add_special=true,  parse_special=true)
 *   PREFIX.dec      llama_detokenize(ids of .out, remove_special=false, unparse_special=true)
 *   PREFIX.decskip  llama_detokenize(ids of .out, remove_special=false, unparse_special=false)
 * (the .dec files in the .inp format). parse_special=true is what llama-tokenize and llama-cli
 * use by default. */
#define _GNU_SOURCE /* memmem: the strings may hold NUL bytes */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define SEP "\n__ggml_vocab_test__\n"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static FILE *open_out(const char *prefix, const char *ext)
{
    char p[4096];
    snprintf(p, sizeof p, "%s.%s", prefix, ext);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(1);
    }
    return f;
}

static int tokenize(const struct llama_vocab *v, const char *s, size_t n, int add, llama_token **ids)
{
    int cap = (int)n + 16;
    *ids = malloc((size_t)cap * sizeof **ids);
    int k = llama_tokenize(v, s, (int32_t)n, *ids, cap, add, 1);
    if (k < 0) {
        cap = -k;
        *ids = realloc(*ids, (size_t)cap * sizeof **ids);
        k = llama_tokenize(v, s, (int32_t)n, *ids, cap, add, 1);
    }
    return k;
}

static void put_ids(FILE *f, const llama_token *ids, int k)
{
    for (int i = 0; i < k; i++)
        fprintf(f, i ? " %d" : "%d", ids[i]);
    fputc('\n', f);
}

static void put_dec(FILE *f, const struct llama_vocab *v, const llama_token *ids, int k, int unparse)
{
    int cap = 64 + 64 * k;
    char *buf = malloc((size_t)cap);
    int n = llama_detokenize(v, ids, k, buf, cap, 0, unparse);
    if (n < 0) {
        cap = -n;
        buf = realloc(buf, (size_t)cap);
        n = llama_detokenize(v, ids, k, buf, cap, 0, unparse);
    }
    fwrite(buf, 1, (size_t)n, f);
    fputs(SEP, f);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf INPUT.inp PREFIX\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = 1;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    if (!m) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab *v = llama_model_get_vocab(m);
    size_t len;
    char *inp = slurp(argv[2], &len);
    if (!inp) {
        perror(argv[2]);
        return 1;
    }
    FILE *out = open_out(argv[3], "out"), *outs = open_out(argv[3], "outs");
    FILE *dec = open_out(argv[3], "dec"), *decskip = open_out(argv[3], "decskip");
    char *p = inp, *q;
    while ((q = memmem(p, len - (size_t)(p - inp), SEP, strlen(SEP))) != NULL) {
        llama_token *ids;
        int k = tokenize(v, p, (size_t)(q - p), 0, &ids);
        put_ids(out, ids, k);
        put_dec(dec, v, ids, k, 1);
        put_dec(decskip, v, ids, k, 0);
        free(ids);
        k = tokenize(v, p, (size_t)(q - p), 1, &ids);
        put_ids(outs, ids, k);
        free(ids);
        p = q + strlen(SEP);
    }
    fclose(out);
    fclose(outs);
    fclose(dec);
    fclose(decskip);
    free(inp);
    llama_model_free(m);
    llama_backend_free();
    return 0;
}
