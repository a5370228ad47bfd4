/* lora-random-model — write a model folder with random weights for a config.json, for measuring
 * speed and memory at real shapes (e.g. ../shared/models/qwen2.5-0.5b/config.json). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-random-model";

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    struct arg_file *config = arg_file1("c", "config", "FILE", "config.json (or a model folder)");
    struct arg_file *out = arg_file1("o", "out", "DIR", "output folder (must not exist)");
    struct arg_str *dtype = arg_str0(NULL, "dtype", "f32|bf16", "weight dtype (default bf16)");
    struct arg_end *end = arg_end(20);
    void *at[] = {config, out, dtype, CLI_COMMON_ENTRIES(c), end};
    int rc = cli_parse(argc, argv, at, end, &c, TOOL,
                       "Write config.json + model.safetensors with random weights "
                       "(N(0, initializer_range) matrices, unit norms).",
                       NULL);
    if (rc >= 0)
        goto done;
    const char *dt = dtype->count ? dtype->sval[0] : "bf16";
    if (strcmp(dt, "f32") != 0 && strcmp(dt, "bf16") != 0) {
        rc = cli_usage_error(TOOL, "--dtype: expected f32 or bf16, got '%s'", dt);
        goto done;
    }
    char cfg[4096];
    const char *cp = config->filename[0];
    size_t n = strlen(cp);
    if (n < 5 || strcmp(cp + n - 5, ".json") != 0)
        snprintf(cfg, sizeof cfg, "%s/config.json", cp);
    else
        snprintf(cfg, sizeof cfg, "%s", cp);
    lk_status s = lk_model_write_random(cfg, out->filename[0], dt, cli_seed(&c));
    if (s != LK_OK) {
        rc = cli_fail(TOOL, s);
        goto done;
    }
    if (c.json->count) {
        cJSON *j = cli_json_new(&c);
        cJSON_AddStringToObject(j, "out", out->filename[0]);
        cJSON_AddStringToObject(j, "dtype", dt);
        cli_json_emit(j);
    } else
        printf("wrote %s (%s, seed %llu)\n", out->filename[0], dt,
               (unsigned long long)cli_seed(&c));
    rc = CLI_OK;
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
