/* json.h — JSON files as lorakit reads them (config.json, adapter_config.json, tokenizer files,
 * safetensors headers, index files, checkpoint descriptions): RFC 8259 text checked before cJSON
 * sees it, so every way a file can fail gets its own message with the byte offset. */
#ifndef LK_JSON_H
#define LK_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "lorakit/core.h"

/* Parse text[0..len) as one JSON value: valid UTF-8 throughout, no raw control characters or
 * \u0000 inside strings (C strings would cut them short), nesting at most CJSON_NESTING_LIMIT
 * deep, only whitespace after the value: LK_ERR_FORMAT "<what>: not valid JSON: <reason> at byte
 * N"; and no object with a key twice: "<what>: key 'K' appears twice". what names the text in
 * messages ("PATH" or "PATH: header"). *out: caller cJSON_Deletes. */
lk_status json_parse(const char *what, const char *text, size_t len, cJSON **out);

/* read_text_file(path, max_size) then json_parse. */
lk_status json_read_file(const char *path, size_t max_size, cJSON **out);

#endif /* LK_JSON_H */
