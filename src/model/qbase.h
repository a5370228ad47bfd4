/* qbase.h — pre-quantised bases on disk: lorakit's own quantised folder (written by
 * lk_quantize_model, mapped zero-copy at load) and bitsandbytes 4-bit Hugging Face folders.
 *
 * lorakit folder: config.json and tokenizer files of the source, model.safetensors whose
 * quantised matrices are U8 [out, row_bytes] in exactly quant/q4.h's row layout, every tensor's
 * data 64-byte aligned (U8 "__pad.N" tensors fill the gaps and are never loaded), norms and
 * biases F32, and __metadata__ {"lorakit.quant": "nf4", "lorakit.quant_block": "64",
 * "lorakit.quant_embed": "f32"|"q8_0", "lorakit.version": "1"}.
 *
 * bitsandbytes folder (transformers' save_pretrained of a load_in_4bit model): per linear weight
 * "W" packed uint8 codes of the FLATTENED tensor, "W.absmax" (F32, or U8 with
 * "W.nested_absmax" and "W.nested_quant_map" when double-quantised), "W.quant_map" and
 * "W.quant_state.bitsandbytes__nf4" (JSON bytes: quant_type, blocksize, dtype, shape, nested_*).
 */
#ifndef LK_QBASE_H
#define LK_QBASE_H

#include "q4.h"
#include "formats/safetensors.h"

#define QBASE_KEY_QUANT   "lorakit.quant"
#define QBASE_KEY_BLOCK   "lorakit.quant_block"
#define QBASE_KEY_EMBED   "lorakit.quant_embed"
#define QBASE_KEY_VERSION "lorakit.version"
#define QBASE_PAD_PREFIX  "__pad."

/* Bind the U8 tensor t (found under the model's name for a [out, in] weight; embed: 1 for the
 * embeddings / LM head, 0 for a decoder linear) from a lorakit quantised file or a bitsandbytes
 * folder into qw. Everything is checked against the shape and the metadata, and every scale must
 * be finite (LK_ERR_FORMAT naming the tensor otherwise). A bitsandbytes tensor whose rows are
 * not whole blocks cannot be NF4 rows: it comes back as exact fp32 values in *w32 (qw unset).
 * *owned: NULL when qw->data points into the mapping, else a heap buffer (the rows or *w32) the
 * caller keeps until the model is freed (always NULL after a failure: nothing to free). */
lk_status qbase_bind(const st_set *st, const tensor_view *t, int64_t out, int64_t in, int embed,
                     q4_weight *qw, const float **w32, void **owned);

#endif /* LK_QBASE_H */
