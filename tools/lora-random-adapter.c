/* lora-random-adapter — write a PEFT adapter with random factors for a model config (A as PEFT
 * initialises it, B ~ N(0, std²) instead of zero), for benchmarks and tests of merge, export and
 * inspect at real shapes (e.g. ../shared/models/qwen2.5-0.5b). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-random-adapter";

/* "q,k,v,o,gate,up,down" (or "all") → module mask; 0 on a bad list. */
static unsigned parse_targets(const char *s)
{
    static const char *const names[LK_MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
    if (!strcmp(s, "all"))
        return LK_MOD_ALL;
    unsigned mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int k = 0; k < LK_MOD_COUNT; k++)
            if (!strcmp(t, names[k]) || !strcmp(t, lk_module_name((lk_module)k)))
                mask |= 1u << k, found = 1;
        if (!found)
            return 0;
    }
    return mask;
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    struct arg_file *model = arg_file1("m", "model", "DIR",
                                       "model folder (only config.json is "
                                       "read)");
    struct arg_file *out = arg_file1("o", "out", "DIR", "output PEFT folder");
    struct arg_int *rank = arg_int0(NULL, "rank", "R", "rank (default 16)");
    struct arg_dbl *alpha = arg_dbl0(NULL, "alpha", "A", "lora_alpha (default 2 x rank)");
    struct arg_lit *rslora = arg_lit0(NULL, "rslora", "scale alpha/sqrt(r)");
    struct arg_str *targets = arg_str0(NULL, "targets", "LIST",
                                       "q,k,v,o,gate,up,down or all "
                                       "(default all)");
    struct arg_dbl *std = arg_dbl0(NULL, "std-b", "S", "standard deviation of B (default 0.01)");
    struct arg_lit *force = arg_lit0(NULL, "force", "replace an existing output");
    struct arg_end *end = arg_end(20);
    void *at[] = {model, out, rank, alpha, rslora, targets, std, force, CLI_COMMON_ENTRIES(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Write a PEFT adapter with random factors for a model's shapes.", NULL);
    if (rc >= 0)
        goto done;
    struct lk_adapter_params p = lk_adapter_params_default();
    p.rank = rank->count ? rank->ival[0] : 16;
    p.alpha = alpha->count ? alpha->dval[0] : 2.0 * (double)p.rank;
    p.use_rslora = rslora->count > 0;
    p.target_mask = parse_targets(targets->count ? targets->sval[0] : "all");
    p.init_std_b = std->count ? std->dval[0] : 0.01;
    p.seed = cli_seed(&c);
    if (p.rank < 1 || p.target_mask == 0 || p.init_std_b < 0) {
        rc = cli_usage_error(TOOL, "--rank must be >= 1, --std-b >= 0 and --targets a list of "
                                   "q,k,v,o,gate,up,down");
        goto done;
    }
    struct lk_model_config cfg;
    lk_adapter *a = NULL;
    lk_status s = lk_config_load(model->filename[0], &cfg);
    if (s == LK_OK)
        s = lk_adapter_create(&cfg, &p, &a);
    if (s == LK_OK)
        s = lk_adapter_save_peft(a, out->filename[0], force->count > 0);
    if (s == LK_OK) {
        struct lk_adapter_info in;
        lk_adapter_get_info(a, &in);
        if (c.json->count) {
            cJSON *j = cli_json_new(&c);
            cJSON_AddStringToObject(j, "out", out->filename[0]);
            cJSON_AddNumberToObject(j, "modules", (double)in.n_modules);
            cJSON_AddNumberToObject(j, "params", (double)in.n_params);
            cli_json_emit(j);
        } else {
            printf("wrote %s (%lld modules, %lld parameters, seed %llu)\n", out->filename[0],
                   (long long)in.n_modules, (long long)in.n_params, (unsigned long long)p.seed);
        }
    }
    rc = s == LK_OK ? CLI_OK : cli_fail(TOOL, s);
    lk_adapter_free(a);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
