/* json.h — JSON files as lorakit reads them (config.json, adapter_config.json, tokenizer files,
 * safetensors headers, index files, checkpoint descriptions): RFC 8259 text checked before cJSON
 * sees it, so every way a file can fail gets its own message with the byte offset. */
#ifndef LK_JSON_H
#define LK_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "core/buf.h"
#include "lorakit/core.h"

/* Parse text[0..len) as one JSON value: valid UTF-8 throughout, no raw control characters or
 * \u0000 inside strings (C strings would cut them short), nesting at most CJSON_NESTING_LIMIT
 * deep, only whitespace after the value: LK_ERR_FORMAT "<what>: not valid JSON: <reason> at byte
 * N"; and no object with a key twice: "<what>: key 'K' appears twice". what names the text in
 * messages ("PATH" or "PATH: header"). *out: caller cJSON_Deletes. */
lk_status json_parse(const char *what, const char *text, size_t len, cJSON **out);

/* read_text_file(path, max_size) then json_parse. */
lk_status json_read_file(const char *path, size_t max_size, cJSON **out);

/* Append v as Python's json.dumps(v, ensure_ascii=False) writes it (indent 0), or with
 * indent=N (N > 0): what transformers' tojson filter gives a chat template. Separators ", " and
 * ": " (with an indent "," and ": "), keys in their order, non-ASCII characters as they are,
 * floats as Python's repr. One difference: cJSON does not keep a number's spelling, so an
 * integral float (5.0) is written as an int (5). */
lk_status json_dump_py(const cJSON *v, int indent, struct buf *b);

#endif /* LK_JSON_H */
