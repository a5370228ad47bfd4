/* test_json.c — json_parse, the gate every JSON file goes through: each way a text can fail
 * (invalid UTF-8 of every kind, control characters and NUL in strings, nesting beyond cJSON's
 * limit, data after the value, truncation) gets its own reason and byte offset; valid texts
 * (UTF-8, escapes, surrogate pairs, trailing whitespace) parse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "testutil.h"

static void ok(const char *text)
{
    cJSON *j = NULL;
    assert_ok(json_parse("t.json", text, strlen(text), &j));
    assert_non_null(j);
    cJSON_Delete(j);
}

static void bad_n(const char *text, size_t n, const char *needle)
{
    cJSON *j = (cJSON *)1;
    assert_status(json_parse("t.json", text, n, &j), LK_ERR_FORMAT, needle);
    assert_null(j);
    assert_non_null(strstr(lk_last_error(), "t.json: not valid JSON: "));
}

static void bad(const char *text, const char *needle)
{
    bad_n(text, strlen(text), needle);
}

static void test_valid(void **state)
{
    (void)state;
    ok("{\"a\": [1, 2.5, -3e2, true, false, null], \"b\": {}}");
    ok("\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"");
    ok("[\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\"]");
    ok(" {} \n\t\r\n");
}

static void test_utf8(void **state)
{
    (void)state;
    bad("{\"a\": \"\xff\"}", "invalid UTF-8 at byte 7");
    bad("{\"a\": \"\xc0\xaf\"}", "invalid UTF-8 at byte 7");         /* overlong '/' */
    bad("{\"a\": \"\xed\xa0\x80\"}", "invalid UTF-8 at byte 7");     /* UTF-16 surrogate */
    bad("{\"a\": \"\xf4\x90\x80\x80\"}", "invalid UTF-8 at byte 7"); /* > U+10FFFF */
    bad("{\"a\": \"\xe4\xb8\"}", "invalid UTF-8 at byte 7");         /* cut short */
    bad("{\"\xfe\": 1}", "invalid UTF-8 at byte 2");                 /* in a key */
    bad("[1]\x80", "invalid UTF-8 at byte 3");                       /* outside strings */
    bad("[\"\\ud800\"]", "syntax error");                            /* lone surrogate escape */
}

static void test_strings(void **state)
{
    (void)state;
    bad("[\"a\nb\"]", "control character inside a string at byte 3");
    bad("[\"a\\u0000b\"]", "NUL character");
    bad_n("[\"a\0b\"]", 7, "control character inside a string at byte 3");
    bad_n("[1]\0", 4, "more data after the value at byte 3");
}

static void test_nesting(void **state)
{
    (void)state;
    enum { D = 1000 };
    char *t = malloc(2 * (D + 1) + 1);
    memset(t, '[', D);
    memset(t + D, ']', D);
    t[2 * D] = 0;
    ok(t); /* cJSON's limit itself parses */
    memset(t, '[', D + 1);
    memset(t + D + 1, ']', D + 1);
    t[2 * D + 2] = 0;
    bad(t, "nested deeper than 1000 levels at byte 1000");
    memset(t, '{', 2 * D + 1); /* unterminated and too deep: the depth is reported */
    t[2 * D + 1] = 0;
    bad(t, "nested deeper than 1000");
    memset(t, '[', 2 * D); /* brackets inside a string do not nest */
    t[0] = '"';
    t[2 * D - 1] = '"';
    t[2 * D] = 0;
    ok(t);
    free(t);
}

static void test_syntax(void **state)
{
    (void)state;
    bad("", "unexpected end");
    bad("{\"a\": [1, 2", "unexpected end (truncated?)");
    bad("{\"a\": tru}", "syntax error at byte 6");
    bad("{\"a\": 1} {\"b\": 2}", "more data after the value at byte 9");
    bad("{\"a\": 1}x", "more data after the value at byte 8");
}

/* A key twice in any object, at any depth, is refused (found by sorting, so 10^5 keys cost
 * milliseconds); the same key in different objects is fine. */
static void test_duplicate_keys(void **state)
{
    (void)state;
    cJSON *j = NULL;
    const char *t = "{\"a\": 1, \"b\": {\"x\": 1, \"y\": [{\"k\": 1, \"k\": 2}]}}";
    assert_status(json_parse("t.json", t, strlen(t), &j), LK_ERR_FORMAT,
                  "t.json: key 'k' appears twice");
    t = "{\"r\": 4, \"lora_alpha\": 8, \"r\": 16}";
    assert_status(json_parse("t.json", t, strlen(t), &j), LK_ERR_FORMAT, "key 'r' appears twice");
    assert_null(j);
    ok("{\"a\": {\"a\": {\"a\": 1}}, \"b\": [{\"a\": 1}, {\"a\": 2}]}");
    enum { N = 100000 };
    char *big = malloc(N * 16 + 32), *p = big;
    p += sprintf(p, "{");
    for (int i = 0; i < N; i++)
        p += sprintf(p, "%s\"k%07d\":1", i ? "," : "", i);
    sprintf(p, ",\"k%07d\":2}", N / 2);
    assert_status(json_parse("t.json", big, strlen(big), &j), LK_ERR_FORMAT,
                  "key 'k0050000' appears twice");
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),   cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_strings), cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_syntax),  cmocka_unit_test(test_duplicate_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
