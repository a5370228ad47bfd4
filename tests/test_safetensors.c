/* test_safetensors.c — safetensors reading, writing and validation: each malformed case gets its
 * exact status and a message naming the problem; truncation at every length never crashes;
 * sharded index files are checked (shard names, membership, duplicates). */
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "testutil.h"

/* A file: u64 header length, the header text, then data_len bytes of 0x11. */
static const char *craft(const char *name, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    uint8_t *buf = calloc(1, 8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, 0x11, data_len);
    const char *p = tmp_path(name);
    assert_int_equal(write_file(p, buf, 8 + hl + data_len), 0);
    free(buf);
    return p;
}

static void expect_bad(const char *header, size_t data_len, const char *needle)
{
    st_file f;
    const char *p = craft("bad.safetensors", header, data_len);
    assert_status(st_open(&f, p, 1), LK_ERR_FORMAT, needle);
    /* the message names the file */
    assert_non_null(strstr(lk_last_error(), "bad.safetensors"));
}

static void test_valid(void **state)
{
    (void)state;
    st_file f;
    const char *p = craft("ok.safetensors",
                          "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[16,20]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                          "\"__metadata__\":{\"format\":\"pt\"}}",
                          20);
    assert_ok(st_open(&f, p, 1));
    assert_int_equal(f.n, 2);
    const tensor_view *a = st_get(&f, "a");
    assert_non_null(a);
    assert_int_equal(a->dt, DT_F32);
    assert_int_equal(a->shape[1], 2);
    assert_int_equal(a->nbytes, 16);
    assert_non_null(st_get(&f, "b"));
    assert_null(st_get(&f, "c"));
    assert_non_null(f.metadata);
    st_close(&f);
}

static void test_malformed(void **state)
{
    (void)state;
    st_file f;
    assert_int_equal(write_file(tmp_path("short.safetensors"), "\x01\x02", 2), 0);
    assert_status(st_open(&f, tmp_path("short.safetensors"), 1), LK_ERR_FORMAT, "too short");
    assert_status(st_open(&f, tmp_path("missing.safetensors"), 1), LK_ERR_IO, "cannot open");
    /* header length beyond the file */
    uint8_t big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(write_file(tmp_path("hlen.safetensors"), big, 10), 0);
    assert_status(st_open(&f, tmp_path("hlen.safetensors"), 1), LK_ERR_FORMAT, "header length");
    expect_bad("[1, 2]", 0, "does not start");
    expect_bad("{\"a\": ", 0, "not valid JSON");
    expect_bad("{\"a\":{\"dtype\":\"F32\"", 0, "not valid JSON");
    expect_bad("{\"a\":[1,2]}", 0, "not an object");
    expect_bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "unknown dtype 'F33'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               "shape entry 0");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
               "shape entry 0");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
               "needs 12 bytes but data_offsets give 8");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
               "beyond the data section");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
               "begin <= end");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8,
               "data_offsets must be");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8, "needs string 'dtype'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "appears twice");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
               "\"data_offsets\":[0,4]}}",
               4, "overflows 64 bits");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
               4, "dimensions");
    expect_bad("{\"__metadata__\":[1]}", 0, "__metadata__");
}

/* Every prefix of a valid file is rejected cleanly (FORMAT), the whole file opens. */
static void test_truncation(void **state)
{
    (void)state;
    const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]}}";
    char p[4096];
    snprintf(p, sizeof p, "%s", craft("full.safetensors", hdr, 30));
    mapfile m;
    assert_ok(mapfile_open(&m, p, 0));
    for (size_t len = 0; len < m.size; len++) {
        assert_int_equal(write_file(tmp_path("cut.safetensors"), m.data, len), 0);
        st_file f;
        lk_status s = st_open(&f, tmp_path("cut.safetensors"), len & 1);
        if (s != LK_ERR_FORMAT)
            fail_msg("prefix of %zu bytes: got %s (%s)", len, lk_status_str(s), lk_last_error());
    }
    st_file f;
    assert_ok(st_open(&f, p, 1));
    st_close(&f);
    mapfile_close(&m);
}

/* st_write then st_open gives the same tensors; data is 64-byte aligned; no temp file left. */
static void test_write_roundtrip(void **state)
{
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0xc040};
    tensor_view v[2] = {
        {.name = "layer.a", .dt = DT_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = 24},
        {.name = "layer.b", .dt = DT_BF16, .ndim = 1, .shape = {3}, .data = b, .nbytes = 6},
    };
    const char *p = tmp_path("w.safetensors");
    assert_ok(st_write(p, v, 2, NULL, NULL, NULL, 0));
    assert_status(st_write(p, v, 2, NULL, NULL, NULL, 0), LK_ERR_IO, "already exists");
    st_file f;
    assert_ok(st_open(&f, p, 1));
    const tensor_view *ra = st_get(&f, "layer.a"), *rb = st_get(&f, "layer.b");
    assert_non_null(ra);
    assert_non_null(rb);
    assert_memory_equal(ra->data, a, 24);
    assert_memory_equal(rb->data, b, 6);
    assert_int_equal(((const uint8_t *)ra->data - f.map.data) % 64, 0);
    st_close(&f);
}

static void write_shard(const char *name, const char *tname, float val)
{
    float d[2] = {val, val};
    tensor_view v = {.name = tname, .dt = DT_F32, .ndim = 1, .shape = {2}, .data = d, .nbytes = 8};
    assert_ok(st_write(tmp_path(name), &v, 1, NULL, NULL, NULL, 1));
}

static void write_index(const char *json)
{
    assert_int_equal(write_file(tmp_path("model.safetensors.index.json"), json, strlen(json)), 0);
}

static void test_sharded(void **state)
{
    (void)state;
    write_shard("s1.safetensors", "x", 1);
    write_shard("s2.safetensors", "y", 2);
    write_index(
        "{\"metadata\":{},\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s2.safetensors\"}}");
    st_set s;
    assert_ok(st_set_open(&s, g_dir, 1));
    assert_int_equal(s.n_files, 2);
    const tensor_view *y = st_set_get(&s, "y");
    assert_non_null(y);
    assert_true(((const float *)y->data)[0] == 2.0f);
    st_set_close(&s);

    write_index("{\"weight_map\":{\"x\":\"../s1.safetensors\"}}");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "file name inside");
    write_index("{\"weight_map\":{\"x\":\"/etc/passwd\"}}");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "file name inside");
    write_index("{\"weight_map\":{\"y\":\"s1.safetensors\"}}");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "does not hold it");
    write_shard("s3.safetensors", "x", 3);
    write_index("{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s3.safetensors\"}}");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "does not hold it");
    write_index("{\"weight_map\":{\"x\":\"s1.safetensors\",\"x2\":\"s3.safetensors\"}}");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "does not hold it");
    write_index("{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s2.safetensors\","
                "\"z\":\"s3.safetensors\"}}");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "does not hold it");
    write_index("[1]");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "weight_map");
    remove(tmp_path("model.safetensors.index.json"));
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_IO, "no model.safetensors");
}

/* The same tensor in two shards is refused. */
static void test_sharded_duplicate(void **state)
{
    (void)state;
    write_shard("d1.safetensors", "x", 1);
    write_shard("d2.safetensors", "x", 2);
    write_index("{\"weight_map\":{\"x\":\"d1.safetensors\",\"x \":\"d2.safetensors\"}}");
    st_set s;
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "does not hold it");
    /* both shards listed, each holding "x": the duplicate is caught when indexing */
    float d[2] = {0, 0};
    tensor_view v[2] = {
        {.name = "x", .dt = DT_F32, .ndim = 1, .shape = {2}, .data = d, .nbytes = 8},
        {.name = "w", .dt = DT_F32, .ndim = 1, .shape = {2}, .data = d, .nbytes = 8},
    };
    assert_ok(st_write(tmp_path("d3.safetensors"), v, 2, NULL, NULL, NULL, 1));
    write_index("{\"weight_map\":{\"x\":\"d1.safetensors\",\"w\":\"d3.safetensors\"}}");
    assert_status(st_set_open(&s, g_dir, 1), LK_ERR_FORMAT, "is in both");
    remove(tmp_path("model.safetensors.index.json"));
}

static void test_f16_bf16_conversion(void **state)
{
    (void)state;
    /* exact values and round-to-nearest-even at the halfway points */
    assert_true(f16_to_f32(0x3c00) == 1.0f);
    assert_true(f16_to_f32(0xc000) == -2.0f);
    assert_true(f16_to_f32(0x0001) == 5.9604644775390625e-08f); /* smallest subnormal */
    assert_true(f16_to_f32(0x7bff) == 65504.0f);
    assert_int_equal(f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00); /* rounds to inf */
    assert_int_equal(f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(f32_to_f16(5.9604644775390625e-08f), 0x0001);
    assert_int_equal(f32_to_f16(2.98023223876953125e-08f), 0x0000); /* tie to even: 0 */
    assert_int_equal(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);       /* tie to even */
    assert_int_equal(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);       /* tie to even (up) */
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips */
        if (f32_to_f16(f16_to_f32((uint16_t)h)) != h)
            fail_msg("f16 0x%04x does not round-trip", h);
    assert_true(bf16_to_f32(0x3f80) == 1.0f);
    assert_int_equal(f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(f32_to_bf16(1.00390625f), 0x3f80); /* tie to even */
    assert_int_equal(f32_to_bf16(1.01171875f), 0x3f82); /* tie to even (up) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_write_roundtrip),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_sharded_duplicate),
        cmocka_unit_test(test_f16_bf16_conversion),
    };
    return cmocka_run_group_tests(tests, tmp_dir_setup, tmp_dir_teardown);
}
