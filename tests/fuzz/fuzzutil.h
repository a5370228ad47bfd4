/* fuzzutil.h — shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c): the input as a file or
 * as files in a private folder (the library's entry points read paths, and the harnesses go
 * through them so the file-reading code is fuzzed too), multi-file inputs split at a separator,
 * and the invariants every harness checks after each call. */
#ifndef LK_FUZZUTIL_H
#define LK_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lorakit/core.h"
#include "lorakit/tokenizer.h"

/* The libFuzzer entry points each harness defines (Initialize only where it needs set-up). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Separator of the parts of a multi-file input (e.g. adapter_config.json, then the weights). */
#define FZ_SEP "#@lkfz@#"

/* Quiet logging (messages are still formatted, then dropped), the private folder. Idempotent;
 * each harness calls it first. */
void fz_init(void);

/* The private folder (under $TMPDIR, else /dev/shm when present; removed at exit). */
const char *fz_dir(void);

/* Write dir/name with n bytes of data; returns the path (valid until the next fz_path call). */
const char *fz_write(const char *name, const void *data, size_t n);

/* Path of dir/name (static buffer, valid until the next call). */
const char *fz_path(const char *name);

/* Remove dir/name if present. */
void fz_remove(const char *name);

/* Copy a committed file (absolute path) to dir/name; aborts if it cannot be read. */
void fz_copy(const char *src, const char *name);

/* The input as an anonymous in-memory file: returns "/proc/self/fd/N" (one file per process,
 * rewritten on every call). */
const char *fz_memfile(const uint8_t *data, size_t n);

/* Split data at FZ_SEP into at most max parts; returns the number of parts (>= 1). */
int fz_split(const uint8_t *data, size_t n, const uint8_t **part, size_t *len, int max);

/* Forget the previous error message (so fz_check sees this call's own). */
void fz_clear_error(void);

/* After a library call: a failure must be a known status with a message, and unless it is
 * NOMEM, the message must name `file` (NULL: skip that check). Aborts (a libFuzzer crash)
 * otherwise. Returns s. With LK_FUZZ_VERBOSE set in the environment every failure is printed
 * (to see why an input is refused: ./fuzz_X FILE). */
lk_status fz_check(lk_status s, const char *file);

/* A loaded tokenizer at the edges of its vocabulary: ids 0 and vocab - 1 and the BOS and EOS
 * decoded (with and without special tokens), and an id past the vocabulary, which must fail with
 * LK_ERR_ARG (abort otherwise). Returns bytes decoded (for the harness's sink). */
size_t fz_tokenizer_edges(const lk_tokenizer *t);

#endif /* LK_FUZZUTIL_H */
