/* utf8.h — decoding one UTF-8 sequence (used by the JSON gate and the tokenizers). */
#ifndef LK_UTF8_H
#define LK_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when s starts an invalid or
 * truncated sequence (overlongs, surrogates and > U+10FFFF are invalid). *cp gets the code point.
 */
int utf8_next(const uint8_t *s, size_t n, uint32_t *cp);

#endif /* LK_UTF8_H */
