/* lorakit — the public API (umbrella header).
 *
 * Everything a tool or an embedding program needs: status codes, logging and durable writes
 * (core.h), model loading, forward and decoding (model.h), tokenizers and datasets
 * (tokenizer.h), adapters (adapter.h), training (train.h) and its run folder (run.h), quantised
 * formats (quant.h), teacher caches (teacher.h), data-parallel groups over MPI (dist.h).
 * All exported names start with lk_ (macros LK_); nothing internal leaks through these files. */
#ifndef LORAKIT_H
#define LORAKIT_H

#include "lorakit/core.h"
#include "lorakit/model.h"
#include "lorakit/generate.h"
#include "lorakit/tokenizer.h"
#include "lorakit/adapter.h"
#include "lorakit/train.h"
#include "lorakit/quant.h"
#include "lorakit/teacher.h"
#include "lorakit/run.h"
#include "lorakit/dist.h"

#endif /* LORAKIT_H */
