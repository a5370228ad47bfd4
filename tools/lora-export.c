/* lora-export — move an adapter between ecosystems:
 *   lora-export -a DIR -m BASE --to gguf -o FILE.gguf   PEFT → llama.cpp GGUF LoRA (--lora)
 *   lora-export --from FILE.gguf -m BASE --to peft -o DIR   GGUF LoRA → PEFT folder
 * The base model's config gives the architecture and head counts (llama.cpp permutes q/k rows of
 * Llama-architecture models) and every module is checked against it. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *TOOL = "lora-export";

static void report(const cli_common *c, const char *in, const char *out, const char *to,
                   const char *dtype, const lk_adapter *a)
{
    struct lk_adapter_info info;
    lk_adapter_get_info(a, &info);
    if (c->json->count) {
        cJSON *j = cli_json_new(c);
        cJSON_AddStringToObject(j, "in", in);
        cJSON_AddStringToObject(j, "in_format", info.format);
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddStringToObject(j, "to", to);
        if (dtype)
            cJSON_AddStringToObject(j, "dtype", dtype);
        cJSON_AddNumberToObject(j, "modules", (double)info.n_modules);
        cJSON_AddNumberToObject(j, "params", (double)info.n_params);
        cli_json_emit(j);
    } else {
        printf("wrote %s (%s%s%s, %lld modules, %lld parameters) from %s\n", out, to,
               dtype ? " " : "", dtype ? dtype : "", (long long)info.n_modules,
               (long long)info.n_params, in);
    }
}

int main(int argc, char **argv)
{
    cli_common c;
    cli_common_init_noseed(&c);
    struct arg_file *adapter = arg_file0("a", "adapter", "DIR",
                                         "adapter to export (PEFT folder "
                                         "or GGUF LoRA)");
    struct arg_file *from = arg_file0(NULL, "from", "FILE",
                                      "same as -a (reads GGUF LoRA files "
                                      "too)");
    struct arg_file *model =
        arg_file1("m", "model", "DIR|GGUF", "base model folder (config.json) or GGUF file");
    struct arg_str *to = arg_str1(NULL, "to", "gguf|peft", "output format");
    struct arg_file *out = arg_file1("o", "out", "OUT", "output file (gguf) or folder (peft)");
    struct arg_str *dtype = arg_str0(NULL, "dtype", "T",
                                     "GGUF tensor type f32|f16|bf16 "
                                     "(default f32; q8_0 needs the "
                                     "quantisation kernels)");
    struct arg_lit *force = arg_lit0(NULL, "force", "replace an existing output");
    struct arg_end *end = arg_end(20);
    void *at[] = {adapter, from, model, to, out, dtype, force, CLI_COMMON_ENTRIES_NOSEED(c), end};
    int rc =
        cli_parse(argc, argv, at, end, &c, TOOL,
                  "Export an adapter to llama.cpp's GGUF LoRA format or to a PEFT folder.",
                  "GGUF: general.type adapter, blk.N.<name>.weight.lora_a/lora_b, q/k rows in\n"
                  "llama.cpp order for Llama-architecture bases; rsLoRA and per-module\n"
                  "rank/alpha are folded into B with adapter.lora.alpha 0. DoRA adapters\n"
                  "cannot be exported to GGUF (llama.cpp cannot apply them): merge them.\n");
    if (rc >= 0)
        goto done;
    const char *fmt = to->sval[0];
    if (strcmp(fmt, "gguf") != 0 && strcmp(fmt, "peft") != 0) {
        rc = cli_usage_error(TOOL, "--to: expected gguf or peft, got '%s'", fmt);
        goto done;
    }
    if (adapter->count + from->count != 1) {
        rc = cli_usage_error(TOOL, "give the adapter with exactly one of -a or --from");
        goto done;
    }
    if (dtype->count && strcmp(fmt, "gguf") != 0) {
        rc = cli_usage_error(TOOL, "--dtype applies to --to gguf (PEFT folders are F32)");
        goto done;
    }
    const char *in = adapter->count ? adapter->filename[0] : from->filename[0];
    const char *dt = dtype->count ? dtype->sval[0] : "f32";
    struct lk_model_config cfg;
    lk_adapter *a = NULL;
    lk_status s = lk_config_load(model->filename[0], &cfg);
    if (s == LK_OK)
        s = lk_adapter_load(in, &a);
    if (s == LK_OK)
        s = lk_adapter_set_base(a, &cfg);
    if (s == LK_OK && fmt[0] == 'g')
        s = lk_adapter_save_gguf(a, &cfg, out->filename[0], dt, force->count > 0);
    else if (s == LK_OK)
        s = lk_adapter_save_peft(a, out->filename[0], force->count > 0);
    if (s == LK_OK)
        report(&c, in, out->filename[0], fmt, fmt[0] == 'g' ? dt : NULL, a);
    rc = s == LK_OK ? CLI_OK : cli_fail(TOOL, s);
    lk_adapter_free(a);
done:
    arg_freetable(at, sizeof at / sizeof *at);
    return rc;
}
