/* adapter_load.c — lk_adapter_load: a file is read as a GGUF LoRA (adapter_gguf.c), a folder as
 * a PEFT adapter (adapter_peft.c). Sits on top of both format files; nothing calls into it. */
#include "lora/adapter.h"

#include <string.h>

#include "core/mapfile.h"
#include "core/status.h"

lk_status lk_adapter_load(const char *path, lk_adapter **out)
{
    *out = NULL;
    size_t n = strlen(path);
    if (file_exists(path)) {
        if (n >= 5 && strcmp(path + n - 5, ".gguf") != 0)
            log_debug("%s: a file: reading it as GGUF", path);
        return adapter_load_gguf(path, out);
    }
    return adapter_load_peft(path, out);
}
