/* config.h — config.json → struct lk_model_config (public type), with validation. */
#ifndef LK_CONFIG_H
#define LK_CONFIG_H

#include <cjson/cJSON.h>

#include "lorakit/model.h"

/* Parse a config.json text of len bytes already read from path (path is used in messages). */
lk_status config_parse(const char *path, const char *text, size_t len, struct lk_model_config *c);

#endif /* LK_CONFIG_H */
