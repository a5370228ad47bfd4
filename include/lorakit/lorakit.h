/* lorakit — the public API (umbrella header).
 *
 * Everything a tool or an embedding program needs: status codes and logging (core.h), model
 * loading, forward and decoding (model.h). Later areas add their own header here.
 * All exported names start with lk_ (macros LK_); nothing internal leaks through these files. */
#ifndef LORAKIT_H
#define LORAKIT_H

#include "lorakit/core.h"
#include "lorakit/model.h"
#include "lorakit/tokenizer.h"
#include "lorakit/adapter.h"
#include "lorakit/train.h"
#include "lorakit/quant.h"
#include "lorakit/teacher.h"

#endif /* LORAKIT_H */
