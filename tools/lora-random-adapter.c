/* lora-random-adapter — write a PEFT adapter with random factors for a model config (A as PEFT
 * initialises it, B ~ N(0, std²) instead of zero), for benchmarks and tests of merge, export and
 * inspect at real shapes (e.g. ../shared/models/qwen2.5-0.5b). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-random-adapter";

/* The flags onto the library's options for a random adapter, checked. */
static int map_params(const struct arg_int *rank, const struct arg_dbl *alpha,
                      const struct arg_lit *rslora, const struct arg_str *targets,
                      const struct arg_dbl *std, const cli_common *c, struct lk_adapter_params *p)
{
    *p = lk_adapter_params_random(rank->count ? rank->ival[0] : LK_RANDOM_ADAPTER_RANK);
    CLI_SET_DBL(alpha, p->alpha);
    CLI_SET_DBL(std, p->init_std_b);
    p->use_rslora = rslora->count > 0;
    p->seed = cli_seed(c);
    lk_status s = LK_OK;
    if (targets->count)
        s = lk_targets_from_name(targets->sval[0], &p->target_mask);
    if (s == LK_OK)
        s = lk_adapter_params_check(p);
    return cli_usage_status(TOOL, s);
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    struct arg_file *model = arg_file1("m", "model", "DIR",
                                       "model folder (only config.json is "
                                       "read)");
    struct arg_file *out = arg_file1("o", "out", "DIR", "output PEFT folder");
    const struct lk_adapter_params d = lk_adapter_params_random(LK_RANDOM_ADAPTER_RANK);
    char tg[64];
    struct arg_int *rank =
        arg_int0(NULL, "rank", "R", cli_help("rank (default %d)", LK_RANDOM_ADAPTER_RANK));
    struct arg_dbl *alpha = arg_dbl0(NULL, "alpha", "A", "lora_alpha (default 2 x rank)");
    struct arg_lit *rslora = arg_lit0(NULL, "rslora", "scale alpha/sqrt(r)");
    struct arg_str *targets = arg_str0(NULL, "targets", "LIST",
                                       cli_help("q,k,v,o,gate,up,down or all (default %s)",
                                                lk_targets_name(d.target_mask, tg, sizeof tg)));
    struct arg_dbl *std = arg_dbl0(NULL, "std-b", "S",
                                   cli_help("standard deviation of B (default %g)", d.init_std_b));
    struct arg_lit *force = arg_lit0(NULL, "force", "replace an existing output");
    struct arg_end *end = arg_end(20);
    void *at[] = {model, out, rank, alpha, rslora, targets, std, force, CLI_COMMON_ENTRIES(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Write a PEFT adapter with random factors for a model's shapes.", NULL);
    if (rc >= 0)
        goto done;
    struct lk_adapter_params p;
    if ((rc = map_params(rank, alpha, rslora, targets, std, &c, &p)) >= 0)
        goto done;
    struct lk_model_config cfg;
    lk_adapter *a = NULL;
    lk_status s = lk_config_load(model->filename[0], &cfg);
    if (s == LK_OK && (rc = cli_usage_status(TOOL, lk_adapter_params_check_model(&p, &cfg))) >= 0)
        goto done; /* --rank beyond the model's modules */
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
