/* merge_api.c — lk_merge: load the base config, check the adapters (merge_prepare), refuse an
 * output that is the base itself, then write a GGUF from a GGUF base keeping its types
 * (merge_gguf_base.c), a llama.cpp GGUF file from a folder (merge_gguf.c) when the output ends in
 * .gguf, else a Hugging Face folder (merge_hf.c). Sits on top of the merge files;
 * nothing calls into it. */
#include "lora/merge.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/config.h"

lk_status lk_merge(const char *base_dir, const lk_adapter *const *adapters, const float *w, int n,
                   const char *out, const struct lk_merge_params *p)
{
    struct lk_model_config cfg;
    merge_ctx c;
    if (n < 0 || (n > 0 && (!adapters || !w)))
        return status_fail(LK_ERR_ARG, "merge: %d adapters without arrays", n);
    size_t len = strlen(out);
    int gguf_out = len >= 5 && strcmp(out + len - 5, ".gguf") == 0;
    if (model_path_is_gguf(base_dir) && !gguf_out)
        return status_fail(LK_ERR_UNSUPPORTED,
                           "%s: a GGUF base merges into a GGUF file only, not the folder '%s' "
                           "(hint: -o FILE.gguf; or merge into the model's Hugging Face folder)",
                           base_dir, out);
    LK_TRY(lk_config_load(base_dir, &cfg));
    LK_TRY(merge_prepare(&c, &cfg, adapters, w, n, p));
    char *rb = realpath(base_dir, NULL), *ro = realpath(out, NULL);
    int same = rb && ro && strcmp(rb, ro) == 0;
    free(rb);
    free(ro);
    if (same) /* --force would replace the base while it is being read */
        return status_fail(LK_ERR_ARG, "%s: the output is the base model %s itself", out,
                           model_path_is_gguf(base_dir) ? "file" : "folder");
    if (model_path_is_gguf(base_dir))
        return merge_gguf_base(&c, base_dir, out);
    if (gguf_out)
        return merge_gguf(&c, base_dir, out);
    return merge_hf(&c, base_dir, out);
}
