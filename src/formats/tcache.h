/* tcache.h — the offline teacher cache for distillation: per trained position of every example,
 * the teacher's top-k next-token ids with their log-probabilities at temperature τ and the log of
 * the remaining mass (kd.h's top-k convention), zstd-compressed in chunks of whole examples with
 * an index for random access by example. Written by lora-teacher (teacher.c), read by the trainer
 * (--teacher-cache). docs/teacher-cache.md says the same with the design reasons.
 *
 * ---- File format, version 1 --------------------------------------------------------------------
 * Integers are unsigned little-endian; floats IEEE-754 binary32, little-endian.
 *
 *   offset  bytes  field
 *        0      8  magic "LKTCACHE"
 *        8      4  version = 1
 *       12      4  header_bytes: header size including the strings; a multiple of 8, >= 128
 *       16      8  k: entries per position, 1 <= k < vocab
 *       24      4  temp τ (f32, finite, > 0): the log-probabilities are of softmax(z / τ)
 *       28      4  flags = 0 (a reader rejects any bit it does not know)
 *       32      8  vocab V: the distribution is over ids [0, V) (the teacher's, or the first V)
 *       40      8  n_examples
 *       48      8  n_chunks
 *       56      8  n_tokens: Σ example lengths
 *       64      8  n_entries: Σ trained positions (positions with an entry)
 *       72      8  index_offset: end of the chunk data, start of the index
 *       80      8  data_hash: h_0 = 0, h_{e+1} = XXH64(tokens of example e as int32, seed h_e)
 *       88      8  seq_len the dataset was loaded with (its examples are truncated to it)
 *       96      4  teacher_len
 *      100      4  data_len
 *      104     24  zero
 *      128         teacher id (teacher_len bytes of UTF-8, no NUL): folder, config hash, quant,
 *                  adapters; then the dataset description (data_len bytes); zeros to header_bytes
 *   header_bytes   chunks: one zstd frame each (content size and checksum set), back to back
 *   index_offset   index: n_chunks entries of 6 × u64:
 *                    offset, csize (compressed bytes), usize (decompressed bytes),
 *                    first_example, n_examples (>= 1), XXH64(compressed bytes, seed 0)
 *                  chunks are contiguous from header_bytes to index_offset, examples contiguous
 *                  from 0 to n_examples
 *   then       8   checksum: XXH64(index, seed = XXH64(header[0, header_bytes), seed 0))
 *   file size = index_offset + 48 · n_chunks + 8.
 *
 * A chunk decompresses to (E = its n_examples, N = Σ n_ent, "planes": m u32 values stored as the
 * m low bytes, then the m second bytes, ... (byte shuffling: each plane compresses on its own)):
 *   n_tok[E], n_ent[E]          u32 each: tokens of example e, positions with an entry
 *   tokens[Σ n_tok]             int32, planes
 *   mask                        per example ceil(n_tok / 8) bytes, bit t (LSB first) set when
 *                               position t has an entry; popcount = n_ent, bit n_tok-1 and the
 *                               padding bits clear
 *   ids[N · k]                  int32 in [0, V), distinct within a position, planes
 *   logp[N · k]                 f32 bit patterns, each position's first as is and the others as
 *                               the difference (mod 2^32) to the previous one (log-probs sorted
 *                               descending make small differences), planes; every value <= 0 or
 *                               -inf, never NaN
 *   log_tail[N]                 f32, planes; <= 0, -inf when the k ids hold all the mass
 * Position t of an example has an entry when t < n_tok - 1 and labels[t + 1] != -100: the
 * teacher's distribution of the token after tokens[0..t], for the trained next token.
 *
 * Thread-safety: a tcache is not thread-safe (tcache_get decompresses into a per-cache buffer). */
#ifndef LK_TCACHE_H
#define LK_TCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "lorakit/core.h"
#include "lorakit/tokenizer.h"

#define TCACHE_VERSION      1
#define TCACHE_HEADER_FIXED 128
#define TCACHE_INDEX_ENTRY  48
#define TCACHE_MAX_CHUNK    ((int64_t)1 << 30) /* decompressed bytes of one chunk, at most */

/* XXH64 (Yann Collet's xxHash, 64-bit) of n bytes with a seed. */
uint64_t tcache_xxh64(const void *p, size_t n, uint64_t seed);

/* ---- reader -------------------------------------------------------------------------------- */

typedef struct tcache tcache;

/* Map path and validate the header and index (magic, version, counts, offsets, checksum). Chunks
 * are checked when first decompressed. LK_ERR_IO when the file cannot be read, LK_ERR_FORMAT
 * naming the file and what is wrong. Caller closes with tcache_close. */
lk_status tcache_open(const char *path, tcache **out);
void tcache_close(tcache *c);

int64_t tcache_k(const tcache *c);
float tcache_temp(const tcache *c);
int64_t tcache_vocab(const tcache *c);
int64_t tcache_examples(const tcache *c);
int64_t tcache_entries(const tcache *c);     /* trained positions in the whole cache */
int64_t tcache_seq_len(const tcache *c);     /* truncation length the cache was made with */
const char *tcache_teacher(const tcache *c); /* NUL-terminated; borrowed until tcache_close */
const char *tcache_data(const tcache *c);
/* The file's closing checksum (over the header and the index, which holds every chunk's XXH64):
 * a fingerprint of the whole cache. */
uint64_t tcache_checksum(const tcache *c);

/* Example e's cached tokens: *tokens [*n], borrowed until the next call on c. */
lk_status tcache_tokens(tcache *c, int64_t e, const int32_t **tokens, int64_t *n);

/* Every example of d (lk_dataset_example, file order) must equal or be a prefix of the cached
 * example's tokens (a smaller --seq-len truncates), the counts must agree, and every position d
 * trains (labels[t + 1] != -100) must have an entry. LK_ERR_ARG naming the first mismatching
 * example (its line) and position. Reads (and checks) every chunk. */
lk_status tcache_verify(tcache *c, const lk_dataset *d);

/* Teacher entries for positions [0, n) of example e (n <= cached length): ids, logp [n·k],
 * log_tail [n] (caller-owned). Positions without an entry get ids 0..k-1, logp -inf, log_tail 0.
 * The last chunk stays decompressed, so sequential access is cheap; a chunk's checksums are
 * verified when it is decompressed (LK_ERR_FORMAT naming the chunk). */
lk_status tcache_get(tcache *c, int64_t e, int64_t n, int32_t *ids, float *logp, float *log_tail);

/* ---- writer -------------------------------------------------------------------------------- */

struct tcache_meta {
    int64_t k;
    float temp;
    int64_t vocab;
    int64_t seq_len;
    const char *teacher;     /* recorded as is (NULL: "") */
    const char *data;        /* recorded as is (NULL: "") */
    int64_t chunk_positions; /* a chunk closes once it holds this many entries (<= 0: 1024) */
};

typedef struct tcache_writer tcache_writer;

/* Start writing path (via a temporary file; an existing path is replaced only with force). */
lk_status tcache_writer_open(const char *path, const struct tcache_meta *m, int force,
                             tcache_writer **out);

/* Positions of tokens[0..n) with an entry: t < n-1 with labels[t+1] != -100 (labels NULL: all). */
int64_t tcache_trained(const int32_t *labels, int64_t n);

/* Append the next example: tokens [n], labels [n] (NULL: every position trained), and for its
 * tcache_trained(labels, n) = E positions in order ids, logp [E·k] and log_tail [E]. LK_ERR_ARG
 * when an id is outside [0, vocab) or repeated within a position, or a log-probability is NaN
 * or positive. */
lk_status tcache_writer_add(tcache_writer *w, const int32_t *tokens, const int32_t *labels,
                            int64_t n, const int32_t *ids, const float *logp,
                            const float *log_tail);

/* Write the last chunk, the index and the header, fsync and rename into place. Frees w whatever
 * happens (on failure the temporary is removed). *bytes (may be NULL): the file size. */
lk_status tcache_writer_finish(tcache_writer *w, int64_t *bytes);

/* Drop everything written (NULL is fine). */
void tcache_writer_abort(tcache_writer *w);

/* ---- the teacher's side ------------------------------------------------------------------- */

/* Top-k of log_softmax(z / temp) over z[0..V): ids[k] by descending log-probability (ties: lower
 * id first), logp[k], and *log_tail = log(Σ of every other id's probability) (-inf when 0), the
 * sums in double. LK_ERR_NUMERIC when a logit is NaN or +inf (or all are -inf), LK_ERR_ARG unless 1
 * <= k <= V. */
lk_status tcache_topk(const float *z, int64_t V, float temp, int64_t k, int32_t *ids, float *logp,
                      float *log_tail);

#endif /* LK_TCACHE_H */
