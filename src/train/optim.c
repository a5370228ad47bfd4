/* optim.c — see optim.h. AdamW follows torch.optim.AdamW (decoupled decay applied first, then the
 * bias-corrected Adam step); schedules follow transformers.optimization. */
#include "train/optim.h"

#include <math.h>

void optim_update(const optim_params *o, float *p, const float *g, float *m, float *v, int64_t n,
                  float lr, int64_t step)
{
    if (o->kind == OPT_SGD) {
        for (int64_t i = 0; i < n; i++)
            p[i] -= lr * (g[i] + o->weight_decay * p[i]);
        return;
    }
    float b1 = o->beta1, b2 = o->beta2;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * o->weight_decay;
    for (int64_t i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        /* p -= lr·m̂/(√v̂ + eps) with m̂ = m/bc1, v̂ = v/bc2, written as torch does */
        p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + o->eps);
    }
}

double grad_norm(const float *g, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return sqrt(s);
}

double clip_grad_norm(float *g, int64_t n, double max_norm)
{
    double norm = grad_norm(g, n);
    if (max_norm > 0) {
        double c = max_norm / (norm + 1e-6);
        if (c < 1)
            for (int64_t i = 0; i < n; i++)
                g[i] = (float)(g[i] * c);
    }
    return norm;
}

float schedule_lr(sched_kind k, float base_lr, int64_t step, int64_t warmup, int64_t total)
{
    if (step < warmup)
        return base_lr * (float)step / (float)(warmup > 1 ? warmup : 1);
    if (k == SCHED_CONSTANT)
        return base_lr;
    double progress = (double)(step - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
    if (k == SCHED_LINEAR)
        return (float)(base_lr * fmax(0.0, 1.0 - progress));
    return (float)(base_lr * fmax(0.0, 0.5 * (1.0 + cos(M_PI * progress))));
}
