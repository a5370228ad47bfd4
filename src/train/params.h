/* params.h — what the trainer needs of its options beyond the public check (params.c). */
#ifndef LK_TRAIN_PARAMS_H
#define LK_TRAIN_PARAMS_H

#include "lorakit/train.h"

/* The alpha a fresh adapter gets: p->alpha, or the rank when it is 0 (the default). */
double train_alpha(const struct lk_train_params *p);

/* The teacher setup: a distillation objective has exactly one teacher (a model or a cache), SFT
 * none. Part of lk_trainer_create's checks (the teacher is a loaded model, so a command line can
 * only check it once the model is loaded). */
lk_status train_check_teacher(const struct lk_train_params *p);

#endif /* LK_TRAIN_PARAMS_H */
