/* check_q8_expand_files.c — a hand check of the int8 expanders of the GGUF read-only types on
 * whole real files (not part of the build): every tensor of type Q4_1 .. IQ4_XS in the given
 * GGUF files, every row expanded by the reference and the AVX2 expanders (the same bytes), and
 * s*q + m compared with q4_decode_ref bit for bit. Build from the repository root after
 * `bash .ci/build.sh build`:
 *     gcc -O2 -std=gnu11 -Iquant -Isrc -Iinclude tests/gen/check_q8_expand_files.c \
 *         build/liblorakit.a -lm -lpthread -o /tmp/check_q8_expand_files
 *     /tmp/check_q8_expand_files /root/peers/models/SmolLM2-135M-Instruct.Q4_K_M.gguf ...
 * Prints the types and tensor counts of each file and the number of mismatches (exit 1 if any). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "q8_gguf.h"
#include "formats/gguf.h"
int main(int argc, char **argv)
{
    long long nvals = 0;
    int bad = 0;
    for (int a = 1; a < argc; a++) {
        gguf_file f;
        if (gguf_open(&f, argv[a])) {
            printf("open %s failed\n", argv[a]);
            return 1;
        }
        int counts[LK_QTYPE_COUNT] = {0};
        for (int64_t t = 0; t < f.n_tensors; t++) {
            const gguf_tensor *g = &f.tensors[t];
            const gguf_type_traits *tr = gguf_type_info(g->type);
            if (!tr || !q8_expander_gguf(tr->qtype))
                continue;
            const int qt = tr->qtype;
            int64_t in = g->ne[0], out = g->nbytes / gguf_row_size(g->type, in);
            q4_weight w;
            if (q4_weight_init(&w, qt, 32, out, in, g->data)) {
                printf("init %s\n", g->name);
                continue;
            }
            int64_t nb = in / 32;
            q8_wblock *e = malloc(nb * sizeof *e), *e2 = malloc(nb * sizeof *e2);
            float *d = malloc(in * 4);
            for (int64_t o = 0; o < out; o++) {
                const uint8_t *row = (const uint8_t *)g->data + o * w.row_bytes;
                q8_expander_gguf(qt)(&w, row, 0, nb, e);
                q8_expander_gguf_avx2(qt)(&w, row, 0, nb, e2);
                if (memcmp(e, e2, nb * sizeof *e)) {
                    printf("%s row %lld: avx2 != ref\n", g->name, (long long)o);
                    bad++;
                }
                q4_decode_ref(&w, o, 0, in, d);
                for (int64_t k = 0; k < in; k++) {
                    const q8_wblock *b = &e[k / 32];
                    int h = (k % 32) / 16;
                    float p = b->s[h] * (float)b->q[k % 32];
                    float v = p + b->m[h];
                    if (memcmp(&v, &d[k], 4)) {
                        if (bad++ < 5)
                            printf("%s row %lld k %lld: %g vs %g\n", g->name, (long long)o,
                                   (long long)k, v, d[k]);
                    }
                }
                nvals += in;
            }
            counts[qt]++;
            free(e);
            free(e2);
            free(d);
        }
        printf("%s:", argv[a]);
        for (int q = 0; q < LK_QTYPE_COUNT; q++)
            if (counts[q])
                printf(" %s x%d", lk_qtype_name(q), counts[q]);
        printf("\n");
        gguf_close(&f);
    }
    printf("%lld values, %d mismatches\n", nvals, bad);
    return bad != 0;
}
