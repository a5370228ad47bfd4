/* config.h — config.json (or a GGUF file's metadata) → struct lk_model_config (public type), with
 * validation. */
#ifndef LK_CONFIG_H
#define LK_CONFIG_H

#include <cjson/cJSON.h>

#include "lorakit/model.h"
#include "formats/gguf.h"

/* Limits that keep a hostile config from asking for absurd allocations. */
#define CFG_MAX_DIM    (1 << 20)
#define CFG_MAX_VOCAB  (1 << 24)
#define CFG_MAX_LAYERS 1024

/* Parse a config.json text of len bytes already read from path (path is used in messages). */
lk_status config_parse(const char *path, const char *text, size_t len, struct lk_model_config *c);

/* 1 if path names a GGUF model file (a .gguf name, or any path that is a regular file) rather
 * than a Hugging Face folder. */
int model_path_is_gguf(const char *path);

/* The config of an opened GGUF model file (config_gguf.c): architectures llama and qwen2, anything
 * else LK_ERR_UNSUPPORTED naming it; every key range-checked, LK_ERR_FORMAT naming file and key. */
lk_status config_from_gguf(const gguf_file *f, struct lk_model_config *c);

#endif /* LK_CONFIG_H */
