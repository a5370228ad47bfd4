/* lora-tokenize — what does my text look like as tokens? Encodes --text or --file with a model
 * folder's tokenizer (a folder with only tokenizer files is fine) or the tokenizer a GGUF file
 * carries in its metadata, prints the ids (--json: one object with an array), decodes them back
 * with --decode, decodes given ids with --ids, and measures encoding speed with --bench. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const TOOL = "lora-tokenize";

static void print_json_string(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\t')
            printf("\\t");
        else if (c == '\r')
            printf("\\r");
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_ids(const int32_t *ids, int64_t n, const char *sep)
{
    for (int64_t i = 0; i < n; i++)
        printf("%s%d", i ? sep : "", ids[i]);
}

/* Encode the whole text `reps` times on each of n_threads threads (one tokenizer shared, as the
 * library allows) and report MB/s: per CPU second of one encoding thread, and in total (wall). */
static int bench(const lk_tokenizer *tok, const char *text, size_t len, int reps, int n_threads,
                 int json)
{
    int64_t ntok = 0;
    lk_status fail = LK_OK;
    double cpu = 0, t0 = cli_now();
#pragma omp parallel num_threads(n_threads) reduction(+ : cpu)
    {
        double c0 = cli_thread_cpu_now();
        for (int r = 0; r < reps; r++) {
            int32_t *ids;
            int64_t n;
            lk_status s = lk_tokenizer_encode(tok, text, len, 0, &ids, &n);
            if (s != LK_OK) {
#pragma omp critical
                fail = s;
                break;
            }
#pragma omp critical
            ntok = n;
            free(ids);
        }
        cpu += cli_thread_cpu_now() - c0;
    }
    if (fail != LK_OK)
        return cli_fail(TOOL, fail);
    double dt = cli_now() - t0, total = (double)len * reps * n_threads;
    double cpu_mbs = total / cpu / 1e6, wall_mbs = total / dt / 1e6;
    if (json)
        printf("{\"version\":\"%s\",\"seed\":42,\"bytes\":%zu,\"tokens\":%lld,\"reps\":%d,"
               "\"threads\":%d,"
               "\"seconds\":%.6f,\"cpu_seconds\":%.6f,\"mb_per_s\":%.3f,\"cpu_mb_per_s\":%.3f}\n",
               lk_version(), len, (long long)ntok, reps, n_threads, dt, cpu, wall_mbs, cpu_mbs);
    else
        printf("%zu bytes -> %lld tokens, %d reps x %d threads: %.3f s wall, %.3f s CPU: "
               "%.2f MB/s per thread-CPU-second, %.2f MB/s total (wall)\n",
               len, (long long)ntok, reps, n_threads, dt, cpu, cpu_mbs, wall_mbs);
    return CLI_OK;
}

/* --chat: the text as one user turn, rendered with the chat template and the generation
 * prompt. The rendered text (template tokens included) replaces *text; caller frees *owned. */
static int render_chat(const lk_tokenizer *tok, const char *tmpl, const char **text, size_t *len,
                       char **owned)
{
    struct lk_chat_params p = lk_chat_params_default();
    p.add_generation_prompt = 1;
    lk_status s = tmpl ? lk_chat_format_from_name(tmpl, &p.format) : LK_OK;
    if (s != LK_OK)
        return cli_usage_error(TOOL, "--chat-template: %s", lk_last_error());
    struct lk_chat_message m = {"user", *text};
    if ((s = lk_chat_render(tok, &p, &m, 1, owned, len)) != LK_OK)
        return cli_fail(TOOL, s);
    *text = *owned;
    return CLI_OK;
}

static int run(const char *dir, const char *text, size_t len, const char *ids_arg, int special,
               int decode, int json, int bench_reps, int bench_threads, const char *chat_tmpl,
               int chat)
{
    double t0 = cli_now();
    lk_tokenizer *tok;
    lk_status s = lk_tokenizer_load(dir, &tok);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    fprintf(stderr, "%s: loaded %s (vocab %lld) in %.3f s\n", TOOL, dir,
            (long long)lk_tokenizer_vocab_size(tok), cli_now() - t0);
    int32_t *ids = NULL;
    int64_t n = 0;
    int rc = CLI_OK;
    char *back = NULL, *rendered = NULL;
    size_t back_len = 0;
    if (chat && (rc = render_chat(tok, chat_tmpl, &text, &len, &rendered)) != CLI_OK)
        goto done;
    if (chat)
        special = 0; /* the template wrote BOS itself, as apply_chat_template assumes */
    if (bench_reps > 0) {
        rc = bench(tok, text, len, bench_reps, bench_threads, json);
        goto done;
    }
    if (ids_arg) {
        if (cli_parse_ids(ids_arg, &ids, &n) != 0) {
            rc = cli_usage_error(TOOL, "--ids: expected a comma-separated list of ids, got '%s'",
                                 ids_arg);
            goto done;
        }
        decode = 1;
    } else if ((s = lk_tokenizer_encode(tok, text, len, special, &ids, &n)) != LK_OK) {
        rc = cli_fail(TOOL, s);
        goto done;
    }
    if (decode && (s = lk_tokenizer_decode(tok, ids, n, 0, &back, &back_len)) != LK_OK) {
        rc = cli_fail(TOOL, s);
        goto done;
    }
    if (json) {
        printf("{\"version\":\"%s\",\"seed\":42,\"n_tokens\":%lld,\"ids\":[", lk_version(),
               (long long)n);
        print_ids(ids, n, ",");
        printf("]");
        if (decode) {
            printf(",\"decoded\":");
            print_json_string(back, back_len);
        }
        printf("}\n");
    } else {
        print_ids(ids, n, " ");
        printf("\n");
        if (decode) {
            fwrite(back, 1, back_len, stdout);
            printf("\n");
        }
    }
    if (decode && !ids_arg) {
        /* the text encoded without BOS/EOS must decode to the input again */
        char *plain = NULL;
        size_t plain_len = 0;
        int32_t *raw = NULL;
        int64_t nraw = 0;
        if ((s = lk_tokenizer_encode(tok, text, len, 0, &raw, &nraw)) != LK_OK ||
            (s = lk_tokenizer_decode(tok, raw, nraw, 0, &plain, &plain_len)) != LK_OK) {
            rc = cli_fail(TOOL, s);
        } else if (plain_len != len || memcmp(plain, text, len) != 0) {
            /* not an error: normalisers (NFC, a literal "▁" in SentencePiece) are lossy */
            fprintf(stderr,
                    "%s: warning: round trip differs: decoded %zu bytes, input %zu bytes "
                    "(the tokenizer normalises the text)\n",
                    TOOL, plain_len, len);
        } else {
            fprintf(stderr, "%s: round trip ok (%lld tokens)\n", TOOL, (long long)n);
        }
        free(plain);
        free(raw);
    }
done:
    free(ids);
    free(back);
    free(rendered);
    lk_tokenizer_free(tok);
    return rc;
}

/* One example with its trained runs in [[...]]: runs of tokens decoded one run at a time. */
static lk_status show_example(const lk_tokenizer *tok, const int32_t *ids, const int32_t *lab,
                              int64_t n)
{
    for (int64_t a = 0; a < n;) {
        int tr = lab[a] != LK_LABEL_IGNORE;
        int64_t b = a;
        while (b < n && (lab[b] != LK_LABEL_IGNORE) == tr)
            b++;
        char *txt;
        size_t len;
        lk_status s = lk_tokenizer_decode(tok, ids + a, b - a, 0, &txt, &len);
        if (s != LK_OK)
            return s;
        printf("%s", tr ? "[[" : "");
        fwrite(txt, 1, len, stdout);
        printf("%s", tr ? "]]" : "");
        free(txt);
        a = b;
    }
    printf("\n");
    return LK_OK;
}

static void print_stats_json(const lk_dataset *d, const struct lk_dataset_params *p)
{
    const struct lk_dataset_stats *s = lk_dataset_get_stats(d);
    printf("{\"version\":\"%s\",\"seed\":%llu,\"seq_len\":%lld,\"lines\":%lld,\"examples\":%lld,"
           "\"bad\":%lld,\"tokens\":%lld,\"trained_tokens\":%lld,\"truncated\":%lld,"
           "\"truncated_tokens\":%lld,\"rows\":%lld,\"packing_efficiency\":%.6f,\"formats\":{",
           lk_version(), (unsigned long long)p->seed, (long long)p->seq_len, (long long)s->lines,
           (long long)s->examples, (long long)s->bad, (long long)s->tokens,
           (long long)s->trained_tokens, (long long)s->truncated, (long long)s->truncated_tokens,
           (long long)s->rows, s->packing_efficiency);
    for (int f = 1; f < LK_DATA_N_FORMATS; f++)
        printf("%s\"%s\":%lld", f > 1 ? "," : "", lk_data_format_name((lk_data_format)f),
               (long long)s->by_format[f]);
    printf("},\"bad_examples\":[");
    int64_t line;
    const char *why;
    for (int64_t k = 0; k < 10 && (why = lk_dataset_bad(d, k, &line)); k++) {
        printf("%s{\"line\":%lld,\"reason\":", k ? "," : "", (long long)line);
        print_json_string(why, strlen(why));
        printf("}");
    }
    printf("]}\n");
}

/* --data: load a dataset as training would and print what it holds. */
static int run_data(const char *dir, const char *path, const struct lk_dataset_params *p, int show,
                    int json)
{
    lk_tokenizer *tok;
    lk_status s = lk_tokenizer_load(dir, &tok);
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    lk_dataset *d = NULL;
    int rc = CLI_OK;
    if ((s = lk_dataset_load(path, tok, p, &d)) != LK_OK) {
        rc = cli_fail(TOOL, s);
        goto done;
    }
    const struct lk_dataset_stats *st = lk_dataset_get_stats(d);
    if (json) {
        print_stats_json(d, p);
        goto done;
    }
    printf("examples %lld (bad %lld), tokens %lld, trained %lld (%.1f%%), rows %lld x %lld, "
           "packing %.1f%%, truncated %lld (%lld tokens)\n",
           (long long)st->examples, (long long)st->bad, (long long)st->tokens,
           (long long)st->trained_tokens,
           st->tokens ? 100.0 * (double)st->trained_tokens / (double)st->tokens : 0.0,
           (long long)st->rows, (long long)p->seq_len, 100.0 * st->packing_efficiency,
           (long long)st->truncated, (long long)st->truncated_tokens);
    for (int64_t i = 0; i < show && i < st->examples; i++) {
        const int32_t *ids, *lab;
        int64_t n, line;
        lk_dataset_example(d, i, &ids, &lab, &n, &line);
        printf("--- line %lld: %lld tokens\n", (long long)line, (long long)n);
        if ((s = show_example(tok, ids, lab, n)) != LK_OK) {
            rc = cli_fail(TOOL, s);
            break;
        }
    }
done:
    lk_dataset_free(d);
    lk_tokenizer_free(tok);
    return rc;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    struct arg_str *model =
        arg_str1("m", "model", "DIR|GGUF", "model or tokenizer folder, or a .gguf file");
    struct arg_str *text = arg_str0(NULL, "text", "STR", "text to encode");
    struct arg_file *file = arg_file0(NULL, "file", "FILE", "encode this file's bytes");
    struct arg_str *ids = arg_str0(NULL, "ids", "LIST", "decode these ids (e.g. 1,15043,2)");
    struct arg_lit *decode = arg_lit0(NULL, "decode",
                                      "also decode the ids and check the round "
                                      "trip");
    struct arg_lit *nospec = arg_lit0(NULL, "no-special", "do not add BOS/EOS");
    struct arg_int *bench_n = arg_int0(NULL, "bench", "N", "encode N times, print MB/s");
    struct arg_lit *chat = arg_lit0(NULL, "chat",
                                    "encode the text as a user turn of the chat "
                                    "template (with the generation prompt)");
    struct arg_str *tmpl = arg_str0(NULL, "chat-template", "NAME",
                                    "chatml, qwen2.5, llama3, llama3.1, llama2, mistral, alpaca "
                                    "(default: recognised from tokenizer_config.json)");
    struct arg_file *data = arg_file0(NULL, "data", "FILE",
                                      "load a JSONL dataset as lora-train would, print a summary");
    struct arg_int *seq_len = arg_int0(NULL, "seq-len", "N",
                                       cli_help("--data: row length (default %lld)",
                                                (long long)lk_dataset_params_default().seq_len));
    struct arg_str *fields =
        arg_str0(NULL, "fields", "MAP", "--data: columns, e.g. prompt=question,completion=answer");
    struct arg_lit *strict = arg_lit0(NULL, "strict", "--data: a bad example is fatal");
    struct arg_lit *nopack = arg_lit0(NULL, "no-pack", "--data: one example per row");
    struct arg_int *show =
        arg_int0(NULL, "show", "N", "--data: print the first N examples, trained tokens in [[ ]]");
    struct arg_end *end = arg_end(20);
    void *table[] = {model, text, file,    ids,    decode, nospec, bench_n, chat,
                     tmpl,  data, seq_len, fields, strict, nopack, show,    CLI_COMMON_ENTRIES(c),
                     end};
    int rc = cli_parse(argc, argv, table, end, &c, TOOL,
                       "Encode text with a Hugging Face tokenizer.json or a GGUF file's "
                       "tokenizer and print the token ids.",
                       "Exactly one of --text, --file, --ids or --data. Ids go to stdout, one "
                       "line (--json: {\"ids\": [...]}).\nEncoding runs on one thread; -t N runs "
                       "--bench on N threads sharing the tokenizer (default 1).\n--seed shuffles "
                       "--data before packing (rows and packing efficiency depend on it).\n");
    if (rc >= 0)
        goto out;
    int nsrc = text->count + file->count + ids->count + data->count;
    if (nsrc != 1) {
        rc = cli_usage_error(TOOL, "give exactly one of --text, --file, --ids or --data");
        goto out;
    }
    if (!data->count && (seq_len->count || fields->count || strict->count || nopack->count ||
                         show->count || c.seed->count)) {
        rc = cli_usage_error(TOOL, "--seq-len, --fields, --strict, --no-pack, --show and --seed "
                                   "go with --data");
        goto out;
    }
    if (data->count) {
        struct lk_dataset_params p = lk_dataset_params_default();
        p.seed = cli_seed(&c);
        if (fields->count)
            p.fields = fields->sval[0];
        p.strict = strict->count > 0;
        p.pack = !nopack->count;
        CLI_SET_INT(seq_len, p.seq_len);
        if ((rc = cli_check_range(TOOL, show, 0, INT64_MAX, NULL)) >= 0)
            goto out;
        if (decode->count || bench_n->count || chat->count) {
            rc = cli_usage_error(TOOL, "--%s does not go with --data",
                                 decode->count    ? "decode"
                                 : bench_n->count ? "bench"
                                                  : "chat");
            goto out;
        }
        if (tmpl->count && lk_chat_format_from_name(tmpl->sval[0], &p.chat_format) != LK_OK) {
            rc = cli_usage_error(TOOL, "--chat-template: %s", lk_last_error());
            goto out;
        }
        if ((rc = cli_usage_status(TOOL, lk_dataset_params_check(&p))) >= 0)
            goto out;
        rc = run_data(model->sval[0], data->filename[0], &p, show->count ? show->ival[0] : 0,
                      c.json->count > 0);
        goto out;
    }
    if ((chat->count || tmpl->count) && ids->count) {
        rc = cli_usage_error(TOOL, "--chat and --chat-template need --text or --file");
        goto out;
    }
    if ((rc = cli_check_range(TOOL, bench_n, 1, INT64_MAX, NULL)) >= 0)
        goto out;
    if (bench_n->count && ids->count) {
        rc = cli_usage_error(TOOL, "--bench needs --text or --file");
        goto out;
    }
    char *buf = NULL;
    size_t len = 0;
    const char *src = NULL;
    if (file->count) {
        if (!(buf = cli_read_file(TOOL, file->filename[0], &len))) {
            rc = CLI_FAIL;
            goto out;
        }
        src = buf;
    } else if (text->count) {
        src = text->sval[0];
        len = strlen(src);
    }
    rc = run(model->sval[0], src, len, ids->count ? ids->sval[0] : NULL, !nospec->count,
             decode->count > 0, c.json->count > 0, bench_n->count ? bench_n->ival[0] : 0,
             c.threads->count && c.threads->ival[0] > 0 ? c.threads->ival[0] : 1,
             tmpl->count ? tmpl->sval[0] : NULL, chat->count || tmpl->count);
    free(buf);
out:
    arg_freetable(table, sizeof table / sizeof table[0]);
    return rc;
}
