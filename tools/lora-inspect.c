/* lora-inspect — what an adapter learned, or how two adapters differ, from the small factors:
 *   lora-inspect ADAPTER [-m BASE]        per layer × module: rank, alpha, scale, ‖A‖, ‖B‖, ‖ΔW‖,
 *                                         ‖ΔW‖/‖W‖ (with -m), top singular values, effective
 *                                         rank, NaN/Inf scan
 *   lora-inspect ADAPTER ADAPTER2         per module: cosine of ΔW, relative Frobenius difference,
 *                                         subspace similarity (principal angles); where they
 *                                         differ most
 * --json prints one object; --svg FILE writes a layer × module heatmap of --stat. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *TOOL = "lora-inspect";

typedef struct {
    struct lk_adapter_module m;
    struct lk_module_stats st;
    struct lk_module_diff d; /* diff mode */
    float sv[8];             /* top singular values */
    int has_diff;
} row;

/* JSON number, or null for NaN/Inf (JSON has neither). */
static void add_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static double stat_value(const row *r, const char *stat)
{
    if (!strcmp(stat, "norm"))
        return r->st.norm_delta;
    if (!strcmp(stat, "rel"))
        return r->st.rel_norm;
    if (!strcmp(stat, "erank"))
        return r->st.effective_rank;
    if (!strcmp(stat, "norm_a"))
        return r->st.norm_a;
    if (!strcmp(stat, "norm_b"))
        return r->st.norm_b;
    if (!r->has_diff)
        return NAN;
    if (!strcmp(stat, "cosine"))
        return r->d.cosine;
    if (!strcmp(stat, "diff"))
        return r->d.rel_diff;
    return r->d.subspace; /* "subspace" */
}

/* ---- SVG heatmap ---- */

/* What each --stat shows, for the heatmap's title (and --help). */
static const char *stat_meaning(const char *stat)
{
    static const char *const m[][2] = {
        {"norm", "|dW|, the Frobenius norm of the update s*B*A"},
        {"rel", "|dW| / |W|, the update's size relative to the base weight"},
        {"erank", "effective rank of dW (how many directions it uses)"},
        {"norm_a", "|A|, the Frobenius norm of the down-projection A"},
        {"norm_b", "|B|, the Frobenius norm of the up-projection B"},
        {"cosine", "the two updates dW1, dW2 compared as vectors: 1 same, 0 unrelated, -1 "
                   "opposite"},
        {"diff", "|dW1 - dW2| / |dW1|, how far the second update is from the first"},
        {"subspace", "subspace similarity: 1 = both write to the same output directions, 0 = "
                     "orthogonal"}};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++)
        if (!strcmp(stat, m[i][0]))
            return m[i][1];
    return stat;
}

/* t in [0, 1] through five colour stops (NaN: grey). */
static void color(const double (*stops)[3], double t, char *out, size_t n)
{
    if (!isfinite(t)) {
        snprintf(out, n, "#dddddd");
        return;
    }
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    int i = t >= 1 ? 3 : (int)(t * 4);
    double f = t * 4 - i;
    int rgb[3];
    for (int k = 0; k < 3; k++)
        rgb[k] = (int)lround(stops[i][k] + f * (stops[i + 1][k] - stops[i][k]));
    snprintf(out, n, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* The colour scale of a statistic: a fixed -1..1 diverging one for the cosine, 0..1 for the
 * subspace similarity, 0..max (viridis) for the others, which are never negative. */
typedef struct {
    double lo, hi;
    const double (*stops)[3];
} scale;

static scale stat_scale(const char *stat, const row *rows, int64_t n)
{
    static const double viridis[5][3] = {
        {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    static const double rdbu[5][3] = {
        {33, 102, 172}, {103, 169, 207}, {247, 247, 247}, {239, 138, 98}, {178, 24, 43}};
    if (!strcmp(stat, "cosine"))
        return (scale){-1, 1, rdbu};
    if (!strcmp(stat, "subspace"))
        return (scale){0, 1, viridis};
    double hi = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = stat_value(&rows[i], stat);
        if (isfinite(v))
            hi = fmax(hi, v);
    }
    return (scale){0, hi > 0 ? hi : 1, viridis};
}

/* The statistic of (layer l, module k), NaN when the adapter has no such module. */
static double cell_value(const row *rows, int64_t n, int64_t l, int k, const char *stat)
{
    for (int64_t i = 0; i < n; i++)
        if (rows[i].m.layer == l && rows[i].m.module == (lk_module)k)
            return stat_value(&rows[i], stat);
    return NAN;
}

/* A vertical colour bar at (x, y), h pixels tall, with tick values; grey explained below. */
static void draw_legend(cli_svg *s, const scale *sc, double x, double y, double h)
{
    const int steps = 64;
    for (int i = 0; i < steps; i++) {
        char c[8];
        color(sc->stops, 1 - (i + 0.5) / steps, c, sizeof c);
        cli_svg_rect(s, x, y + h * i / steps, 18, h / steps + 0.5, c, NULL);
    }
    double first, step, v = sc->lo;
    int nt = cli_nice_ticks(sc->lo, sc->hi, 6, &first, &step);
    for (int i = 0; i <= nt; i++) { /* the ticks, then the top when no tick is near it */
        v = i < nt ? first + i * step : sc->hi;
        if (i == nt && sc->hi - (first + (nt - 1) * step) < 0.2 * (sc->hi - sc->lo))
            break;
        double ty = y + h * (sc->hi - v) / (sc->hi - sc->lo);
        cli_svg_line(s, x + 18, ty, x + 23, ty, "black");
        cli_svg_text(s, x + 26, ty + 4, NULL, "%.3g", v);
    }
    cli_svg_rect(s, x, y + h + 14, 18, 12, "#dddddd", NULL);
    cli_svg_text(s, x + 24, y + h + 24, NULL, "no module");
}

static int write_svg(const char *path, int force, const row *rows, int64_t n, int64_t n_layers,
                     const char *stat, const char *a, const char *b)
{
    const int cw = 76, ch = 18, x0 = 56, y0 = 96;
    scale sc = stat_scale(stat, rows, n);
    double grid_h = (double)n_layers * ch, bar_h = grid_h > 160 ? grid_h : 160;
    size_t tw = strlen(stat_meaning(stat)) + strlen(stat) + 2, aw = strlen(a) + 12;
    if (b && strlen(b) + 12 > aw)
        aw = strlen(b) + 12;
    /* the titles' widths, about: the bold 14 px title ~8.4 px a character, the 11 px lines 6.6 */
    double w = 8.4 * (double)tw > 6.6 * (double)aw ? 8.4 * (double)tw + 12 : 6.6 * (double)aw + 12;
    cli_svg s;
    if (cli_svg_begin(&s, w > x0 + 7 * cw + 110 ? w : x0 + 7 * cw + 110, y0 + bar_h + 44, 11,
                      "white") != 0)
        return cli_fail(TOOL, LK_ERR_NOMEM);
    cli_svg_text(&s, 6, 18, "font-size=\"14\" font-weight=\"bold\"", "%s: %s", stat,
                 stat_meaning(stat));
    cli_svg_text(&s, 6, 38, NULL, "%s%s", b ? "adapter 1: " : "adapter: ", a);
    if (b)
        cli_svg_text(&s, 6, 54, NULL, "adapter 2: %s", b);
    cli_svg_text(&s, 6, b ? 70 : 54, "fill=\"#444444\"",
                 "one cell per layer (rows) and module (columns); hover a cell for its value");
    for (int k = 0; k < LK_MOD_COUNT; k++)
        cli_svg_text(&s, x0 + k * cw + cw / 2, y0 - 8, "text-anchor=\"middle\"", "%s",
                     lk_module_name((lk_module)k));
    cli_svg_text(&s, x0 - 8, y0 - 8, "text-anchor=\"end\"", "layer");
    for (int64_t l = 0; l < n_layers; l++) {
        cli_svg_text(&s, x0 - 8, y0 + (int)l * ch + 13, "text-anchor=\"end\"", "%lld",
                     (long long)l);
        for (int k = 0; k < LK_MOD_COUNT; k++) {
            double v = cell_value(rows, n, l, k, stat);
            char c[8], tip[96];
            color(sc.stops, (v - sc.lo) / (sc.hi - sc.lo), c, sizeof c);
            snprintf(tip, sizeof tip, "layer %lld %s: %.6g", (long long)l,
                     lk_module_name((lk_module)k), v);
            cli_svg_rect(&s, x0 + k * cw, y0 + (int)l * ch, cw - 1, ch - 1, c, tip);
        }
    }
    draw_legend(&s, &sc, x0 + 7 * cw + 20, y0, bar_h);
    lk_status st = cli_svg_save(&s, path, force);
    return st == LK_OK ? CLI_OK : cli_fail(TOOL, st);
}

/* ---- one adapter ---- */

static lk_status collect(const lk_adapter *a, const double *base_norms, row *rows, int64_t n,
                         int64_t *n_bad)
{
    *n_bad = 0;
    for (int64_t i = 0; i < n; i++) {
        lk_status s = lk_adapter_get_module(a, i, &rows[i].m);
        if (s != LK_OK)
            return s;
        float *sv = malloc((size_t)rows[i].m.r * sizeof *sv);
        if (!sv)
            return LK_ERR_NOMEM;
        s = lk_adapter_module_stats(a, i, base_norms ? base_norms[i] : NAN, &rows[i].st, sv);
        for (int k = 0; s == LK_OK && k < 8; k++)
            rows[i].sv[k] = k < rows[i].m.r ? sv[k] : 0;
        free(sv);
        if (s == LK_ERR_NUMERIC) {
            fprintf(stderr, "%s: warning: %s\n", TOOL, lk_last_error());
            (*n_bad)++;
            rows[i].st.effective_rank = NAN;
            continue;
        }
        if (s != LK_OK)
            return s;
    }
    return LK_OK;
}

static void print_info(const struct lk_adapter_info *in, const struct lk_adapter_base *b)
{
    char d[96];
    printf("adapter    %s (%s)\n", in->path, in->format);
    printf("base model %s%s%s\n", *in->base_model ? in->base_model : "(unknown)",
           *in->arch ? "  arch " : "", in->arch);
    printf("rank %lld  alpha %g%s%s  modules %lld  parameters %lld\n", (long long)in->rank,
           in->alpha, in->use_rslora ? "  rsLoRA" : "", in->use_dora ? "  DoRA" : "",
           (long long)in->n_modules, (long long)in->n_params);
    if (in->use_dora)
        printf("DoRA: statistics describe the direction update s*B*A; the magnitude vectors "
               "rescale rows on top of it\n");
    printf("targets   ");
    for (int k = 0; k < LK_MOD_COUNT; k++)
        if (in->target_mask & (1u << k))
            printf(" %s", lk_module_name((lk_module)k));
    printf("\ntrained on %s\n\n", b->recorded ? lk_adapter_base_describe(b, d, sizeof d)
                                              : "an unrecorded base (not written by lora-train)");
}

static void print_table(const row *rows, int64_t n, int with_base, int top)
{
    printf("%5s %-9s %4s %7s %8s %9s %9s %9s %s%6s  top singular values\n", "layer", "module", "r",
           "alpha", "scale", "|A|", "|B|", "|dW|", with_base ? " |dW|/|W| " : "", "erank");
    for (int64_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        printf("%5lld %-9s %4lld %7.4g %8.4g %9.4g %9.4g %9.4g ", (long long)r->m.layer,
               lk_module_name(r->m.module), (long long)r->m.r, r->m.alpha, r->m.scale, r->st.norm_a,
               r->st.norm_b, r->st.norm_delta);
        if (with_base)
            printf("%9.3g ", r->st.rel_norm);
        printf("%6.2f ", r->st.effective_rank);
        for (int k = 0; k < top && k < r->m.r && k < 8; k++)
            printf(" %.4g", r->sv[k]);
        printf("\n");
    }
}

static cJSON *json_rows(const row *rows, int64_t n, int top)
{
    cJSON *arr = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        cJSON *o = cJSON_CreateObject(), *sv = cJSON_CreateArray();
        cJSON_AddNumberToObject(o, "layer", (double)r->m.layer);
        cJSON_AddStringToObject(o, "module", lk_module_name(r->m.module));
        cJSON_AddNumberToObject(o, "r", (double)r->m.r);
        add_num(o, "alpha", r->m.alpha);
        add_num(o, "scale", r->m.scale);
        add_num(o, "norm_a", r->st.norm_a);
        add_num(o, "norm_b", r->st.norm_b);
        add_num(o, "norm_delta", r->st.norm_delta);
        add_num(o, "rel_norm", r->st.rel_norm);
        add_num(o, "effective_rank", r->st.effective_rank);
        cJSON_AddNumberToObject(o, "rank90", (double)r->st.rank90);
        cJSON_AddNumberToObject(o, "nonfinite", (double)r->st.n_nonfinite);
        for (int k = 0; k < top && k < r->m.r && k < 8; k++)
            cJSON_AddItemToArray(sv, cJSON_CreateNumber(r->sv[k]));
        cJSON_AddItemToObject(o, "singular_values", sv);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static cJSON *json_info(const struct lk_adapter_info *in, const struct lk_adapter_base *b)
{
    cJSON *o = cJSON_CreateObject(), *t = cJSON_CreateArray();
    if (b->recorded) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "quant", b->quant);
        cJSON_AddStringToObject(r, "quant_embed", b->quant_embed);
        cJSON_AddStringToObject(r, "compute", b->compute);
        cJSON_AddItemToObject(o, "trained_on", r);
    } else {
        cJSON_AddNullToObject(o, "trained_on");
    }
    cJSON_AddStringToObject(o, "path", in->path);
    cJSON_AddStringToObject(o, "format", in->format);
    cJSON_AddStringToObject(o, "base_model", in->base_model);
    cJSON_AddStringToObject(o, "arch", in->arch);
    cJSON_AddNumberToObject(o, "rank", (double)in->rank);
    cJSON_AddNumberToObject(o, "alpha", in->alpha);
    cJSON_AddBoolToObject(o, "rslora", in->use_rslora);
    cJSON_AddBoolToObject(o, "dora", in->use_dora);
    cJSON_AddNumberToObject(o, "modules", (double)in->n_modules);
    cJSON_AddNumberToObject(o, "params", (double)in->n_params);
    for (int k = 0; k < LK_MOD_COUNT; k++)
        if (in->target_mask & (1u << k))
            cJSON_AddItemToArray(t, cJSON_CreateString(lk_module_name((lk_module)k)));
    cJSON_AddItemToObject(o, "targets", t);
    return o;
}

/* ---- two adapters ---- */

static lk_status diff_all(const lk_adapter *a, const lk_adapter *b, row *rows, int64_t n,
                          int64_t *n_common)
{
    *n_common = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = lk_adapter_find_module(b, rows[i].m.layer, rows[i].m.module);
        if (j < 0)
            continue;
        lk_status s = lk_adapter_module_diff(a, i, b, j, &rows[i].d, NULL);
        if (s != LK_OK)
            return s;
        rows[i].has_diff = 1;
        (*n_common)++;
    }
    return LK_OK;
}

static int cmp_diff_desc(const void *x, const void *y)
{
    const row *a = *(const row *const *)x, *b = *(const row *const *)y;
    double u = isfinite(a->d.rel_diff) ? a->d.rel_diff : -1;
    double v = isfinite(b->d.rel_diff) ? b->d.rel_diff : -1;
    return u < v ? 1 : u > v ? -1 : 0;
}

static void print_diff(const row *rows, int64_t n, int64_t n_b, int64_t n_common)
{
    printf("%5s %-9s %9s %9s %9s\n", "layer", "module", "cosine", "rel.diff", "subspace");
    for (int64_t i = 0; i < n; i++)
        if (rows[i].has_diff)
            printf("%5lld %-9s %9.4f %9.4f %9.4f\n", (long long)rows[i].m.layer,
                   lk_module_name(rows[i].m.module), rows[i].d.cosine, rows[i].d.rel_diff,
                   rows[i].d.subspace);
    printf("\nmodules in both: %lld; only in the first: %lld; only in the second: %lld\n",
           (long long)n_common, (long long)(n - n_common), (long long)(n_b - n_common));
    printf("\nmean cosine by module:");
    for (int k = 0; k < LK_MOD_COUNT; k++) {
        double s = 0;
        int c = 0;
        for (int64_t i = 0; i < n; i++)
            if (rows[i].has_diff && rows[i].m.module == (lk_module)k && isfinite(rows[i].d.cosine))
                s += rows[i].d.cosine, c++;
        if (c)
            printf(" %s %.3f", lk_module_name((lk_module)k), s / c);
    }
    printf("\n");
}

static cJSON *json_diff(const row *rows, int64_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) {
        if (!rows[i].has_diff)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", (double)rows[i].m.layer);
        cJSON_AddStringToObject(o, "module", lk_module_name(rows[i].m.module));
        add_num(o, "cosine", rows[i].d.cosine);
        add_num(o, "rel_diff", rows[i].d.rel_diff);
        add_num(o, "subspace", rows[i].d.subspace);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* The modules where the adapters differ most (largest relative difference), top k. */
static cJSON *most_different(const row *rows, int64_t n, int k, int print)
{
    const row **p = malloc((size_t)(n ? n : 1) * sizeof *p);
    cJSON *arr = cJSON_CreateArray();
    int64_t m = 0;
    for (int64_t i = 0; p && i < n; i++)
        if (rows[i].has_diff)
            p[m++] = &rows[i];
    if (p)
        qsort(p, (size_t)m, sizeof *p, cmp_diff_desc);
    if (print)
        printf("differ most:");
    for (int64_t i = 0; i < m && i < k; i++) {
        char s[64];
        snprintf(s, sizeof s, "layers.%lld.%s", (long long)p[i]->m.layer,
                 lk_module_name(p[i]->m.module));
        cJSON_AddItemToArray(arr, cJSON_CreateString(s));
        if (print)
            printf(" %s (%.3f)", s, p[i]->d.rel_diff);
    }
    if (print)
        printf("\n");
    free(p);
    return arr;
}

/* ---- main ---- */

typedef struct {
    lk_adapter *a[2];
    int n;
    double *base_norms; /* [modules of a[0]] ‖W‖_F with -m, else NULL */
    struct lk_model_config cfg;
    int have_cfg;
} inputs;

static int load_inputs(const struct arg_file *ad, const struct arg_file *model, inputs *in)
{
    lk_status s = LK_OK;
    if (model->count) {
        s = lk_config_load(model->filename[0], &in->cfg);
        in->have_cfg = s == LK_OK;
    }
    for (int i = 0; i < ad->count && s == LK_OK; i++) {
        s = lk_adapter_load(ad->filename[i], &in->a[i]);
        in->n = i + 1;
        if (s == LK_OK && in->have_cfg)
            s = lk_adapter_set_base(in->a[i], &in->cfg);
    }
    if (s == LK_OK && in->have_cfg) {
        struct lk_adapter_info info;
        lk_adapter_get_info(in->a[0], &info);
        in->base_norms = malloc((size_t)(info.n_modules + 1) * sizeof *in->base_norms);
        s = in->base_norms ? lk_adapter_base_norms(in->a[0], model->filename[0], in->base_norms)
                           : LK_ERR_NOMEM;
    }
    if (s != LK_OK)
        return cli_fail(TOOL, s);
    if (in->n == 2 && !in->have_cfg) {
        struct lk_adapter_info x, y;
        lk_adapter_get_info(in->a[0], &x);
        lk_adapter_get_info(in->a[1], &y);
        if (strcmp(x.format, y.format) != 0 &&
            (!strcmp(x.arch, "llama") || !strcmp(y.arch, "llama")))
            return cli_usage_error(TOOL, "diffing a GGUF Llama adapter with a PEFT one needs the "
                                         "base model (-m) to bring q/k rows into one order");
    }
    return -1;
}

static int run(const cli_common *c, inputs *in, const char *svg, const char *stat, int top,
               int force)
{
    struct lk_adapter_info info;
    struct lk_adapter_base base0, base1;
    lk_adapter_get_info(in->a[0], &info);
    lk_adapter_get_base(in->a[0], &base0);
    if (in->n == 2)
        lk_adapter_get_base(in->a[1], &base1);
    int64_t n = info.n_modules, n_bad = 0, n_common = 0, n_b = 0;
    row *rows = calloc((size_t)(n ? n : 1), sizeof *rows);
    if (!rows)
        return cli_fail(TOOL, LK_ERR_NOMEM);
    lk_status s = collect(in->a[0], in->base_norms, rows, n, &n_bad);
    if (s == LK_OK && in->n == 2) {
        struct lk_adapter_info ib;
        lk_adapter_get_info(in->a[1], &ib);
        n_b = ib.n_modules;
        s = diff_all(in->a[0], in->a[1], rows, n, &n_common);
    }
    if (s != LK_OK) {
        free(rows);
        return cli_fail(TOOL, s);
    }
    int64_t n_layers = 0;
    for (int64_t i = 0; i < n; i++)
        n_layers = rows[i].m.layer + 1 > n_layers ? rows[i].m.layer + 1 : n_layers;
    if (c->json->count) {
        cJSON *j = cli_json_new(c);
        cJSON_AddItemToObject(j, "adapter", json_info(&info, &base0));
        cJSON_AddItemToObject(j, "modules", json_rows(rows, n, top));
        cJSON_AddNumberToObject(j, "nonfinite_modules", (double)n_bad);
        if (in->n == 2) {
            struct lk_adapter_info ib;
            lk_adapter_get_info(in->a[1], &ib);
            cJSON_AddItemToObject(j, "adapter2", json_info(&ib, &base1));
            cJSON_AddItemToObject(j, "diff", json_diff(rows, n));
            cJSON_AddItemToObject(j, "differ_most", most_different(rows, n, 5, 0));
        }
        cli_json_emit(j);
    } else {
        print_info(&info, &base0);
        if (in->n == 1) {
            print_table(rows, n, in->base_norms != NULL, top);
            printf("\nNaN/Inf scan: %s\n",
                   n_bad ? "FOUND non-finite values (see warnings)" : "all factors finite");
        } else {
            struct lk_adapter_info ib;
            lk_adapter_get_info(in->a[1], &ib);
            printf("compared with %s (%s, rank %lld)\n\n", ib.path, ib.format, (long long)ib.rank);
            print_diff(rows, n, n_b, n_common);
            cJSON_Delete(most_different(rows, n, 5, 1));
        }
    }
    const char *second = NULL;
    if (in->n == 2) {
        struct lk_adapter_info ib;
        lk_adapter_get_info(in->a[1], &ib);
        second = ib.path;
    }
    int rc = svg ? write_svg(svg, force, rows, n, n_layers, stat, info.path, second) : CLI_OK;
    free(rows);
    return rc != CLI_OK ? rc : n_bad ? CLI_FAIL : CLI_OK;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init_noseed(&c);
    struct arg_file *ad = arg_filen(NULL, NULL, "ADAPTER", 1, 2,
                                    "adapter (PEFT folder or GGUF "
                                    "LoRA); two: compare them");
    struct arg_file *model = arg_file0("m", "model", "DIR|GGUF",
                                       "base model: adds |dW|/|W| and "
                                       "checks shapes");
    struct arg_file *svg = arg_file0(NULL, "svg", "FILE", "write a layer x module heatmap");
    struct arg_str *stat = arg_str0(NULL, "stat", "S",
                                    "heatmap statistic: norm|rel|erank|"
                                    "norm_a|norm_b (one adapter), cosine|"
                                    "diff|subspace (two)");
    struct arg_int *top = arg_int0(NULL, "top", "N",
                                   "singular values to show (default 4, at "
                                   "most 8)");
    struct arg_lit *force = arg_lit0(NULL, "force", "overwrite an existing --svg file");
    struct arg_end *end = arg_end(20);
    void *at[] = {ad, model, svg, stat, top, force, CLI_COMMON_ENTRIES_NOSEED(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Describe an adapter (norms, singular values, effective rank) or compare "
                       "two.",
                       "Everything is computed from the r x r factors; dW = s*B*A is never "
                       "formed.\n"
                       "One adapter, per module: |A|, |B| (Frobenius norms), |dW| the update's "
                       "size, |dW|/|W|\n(with -m) its size beside the base weight, erank the "
                       "effective rank (exp of the entropy\nof the normalised singular values: "
                       "how many directions it really uses), the top singular\nvalues.\n"
                       "Two adapters, per module: cosine of dW1 and dW2 as vectors (1 same update, "
                       "0 unrelated,\n-1 opposite); rel.diff |dW1 - dW2| / |dW1|; subspace: the "
                       "mean cos^2 of the principal\nangles between the column spaces of dW1 and "
                       "dW2 (Hu et al. 2021, section 7): 1 when\nboth write into the same output "
                       "directions, 0 when orthogonal; two random rank-r updates\nscore about "
                       "r/out, so values well above that mean a shared subspace even when the\n"
                       "cosine is small.\n"
                       "--svg: cosine on a fixed -1..1 scale, subspace on 0..1, the others from 0 "
                       "to their largest\nvalue; grey cells are modules an adapter lacks.\n"
                       "Exit status 1 when a factor holds NaN/Inf.\n");
    if (rc >= 0)
        goto done;
    const char *st = stat->count ? stat->sval[0] : ad->count == 2 ? "cosine" : "norm";
    static const char *const one[] = {"norm", "rel", "erank", "norm_a", "norm_b"};
    static const char *const two[] = {"cosine", "diff", "subspace"};
    int ok = 0;
    for (int i = 0; i < 5; i++)
        ok |= !strcmp(st, one[i]);
    for (int i = 0; i < 3 && ad->count == 2; i++)
        ok |= !strcmp(st, two[i]);
    if (!ok || (!strcmp(st, "rel") && !model->count)) {
        rc = cli_usage_error(TOOL,
                             "--stat '%s' is not available here (rel needs -m; cosine, "
                             "diff, subspace need two adapters)",
                             st);
        goto done;
    }
    int ntop = top->count ? top->ival[0] : 4;
    if ((rc = cli_check_range(TOOL, top, 0, 8, NULL)) >= 0)
        goto done;
    if (svg->count && !force->count && access(svg->filename[0], F_OK) == 0) {
        /* before any output: a report without its picture would be half a result */
        fprintf(stderr, "%s: error: %s already exists (use --force to overwrite)\n", TOOL,
                svg->filename[0]);
        rc = CLI_FAIL;
        goto done;
    }
    inputs in = {0};
    if ((rc = load_inputs(ad, model, &in)) < 0)
        rc = run(&c, &in, svg->count ? svg->filename[0] : NULL, st, ntop, force->count > 0);
    lk_adapter_free(in.a[0]);
    lk_adapter_free(in.a[1]);
    free(in.base_norms);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
