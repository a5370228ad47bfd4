/* test_chat.c — native chat renderers against the models' Jinja templates rendered by jinja2
 * (tests/data/tok/chat.json from tests/gen/gen_chat.py), template recognition, and the assistant
 * spans that datasets turn into loss masks. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/chat.h"
#include "core/mapfile.h"

static lk_tokenizer *load(const char *rel)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", shared_path(rel));
    require_file(d);
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(d, &t));
    return t;
}

/* A tokenizer folder for template `name` of chat.json: tokenizer.json linked from the model,
 * tokenizer_config.json with the template and its BOS/EOS. */
static lk_tokenizer *load_with_template(const cJSON *templates, const char *name, const char *model,
                                        char **dir)
{
    const cJSON *tm = cJSON_GetObjectItem(templates, name);
    assert_non_null(tm);
    *dir = make_temp_dir();
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/tokenizer.json", shared_path(model));
    snprintf(dst, sizeof dst, "%s/tokenizer.json", *dir);
    assert_int_equal(symlink(src, dst), 0);
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddItemToObject(cfg, "chat_template",
                          cJSON_Duplicate(cJSON_GetObjectItem(tm, "template"), 1));
    cJSON_AddItemToObject(cfg, "bos_token",
                          cJSON_Duplicate(cJSON_GetObjectItem(tm, "bos_token"), 1));
    cJSON_AddItemToObject(cfg, "eos_token",
                          cJSON_Duplicate(cJSON_GetObjectItem(tm, "eos_token"), 1));
    char *txt = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(dst, sizeof dst, "%s/tokenizer_config.json", *dir);
    assert_int_equal(write_file(dst, txt, strlen(txt)), 0);
    free(txt);
    lk_tokenizer *t;
    assert_ok(lk_tokenizer_load(*dir, &t));
    return t;
}

static void render_case(const lk_tokenizer *t, const struct lk_chat_params *p,
                        const struct lk_chat_message *msgs, int64_t nm, const cJSON *c, int ncase)
{
    char *out = NULL;
    size_t len = 0;
    const cJSON *want = cJSON_GetObjectItem(c, "text");
    if (!want) {
        assert_status(lk_chat_render(t, p, msgs, nm, &out, &len), LK_ERR_ARG, "alternate");
        return;
    }
    assert_ok(lk_chat_render(t, p, msgs, nm, &out, &len));
    if (strcmp(out, want->valuestring) != 0)
        fail_msg("case %d (%s, gen %d):\n got  '%s'\n want '%s'", ncase,
                 cJSON_GetObjectItem(c, "format")->valuestring, p->add_generation_prompt, out,
                 want->valuestring);
    assert_int_equal(len, strlen(out));
    free(out);
}

/* Every case twice: with the format named, and recognised (LK_CHAT_AUTO) from the template text
 * in a tokenizer_config.json. Formats without a name (smollm2) only the second way. */
static void test_fixtures(void **st)
{
    (void)st;
    char *txt;
    size_t n;
    assert_ok(read_text_file(data_path("tok/chat.json"), 1 << 24, &txt, &n));
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    assert_non_null(root);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases"), *c;
    const cJSON *templates = cJSON_GetObjectItem(root, "templates");
    char cur[256] = "", *dir = NULL;
    lk_tokenizer *t = NULL;
    int ncase = 0, named = 0;
    cJSON_ArrayForEach(c, cases)
    {
        const char *fmt = cJSON_GetObjectItem(c, "format")->valuestring;
        if (strcmp(fmt, cur) != 0) {
            lk_tokenizer_free(t);
            if (dir) {
                rm_rf(dir);
                free(dir);
            }
            t = load_with_template(templates, fmt, cJSON_GetObjectItem(c, "tokenizer")->valuestring,
                                   &dir);
            snprintf(cur, sizeof cur, "%s", fmt);
        }
        struct lk_chat_params p = lk_chat_params_default();
        p.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        struct lk_chat_message msgs[16];
        int64_t nm = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(c, "messages"))
        {
            msgs[nm].role = cJSON_GetObjectItem(m, "role")->valuestring;
            msgs[nm++].content = cJSON_GetObjectItem(m, "content")->valuestring;
        }
        render_case(t, &p, msgs, nm, c, ncase); /* recognised from the template */
        if (lk_chat_format_from_name(fmt, &p.format) == LK_OK) {
            render_case(t, &p, msgs, nm, c, ncase); /* named */
            named++;
        }
        ncase++;
    }
    fprintf(stderr, "%d chat cases identical to jinja2 (%d also by name)\n", ncase, named);
    assert_true(ncase >= 100);
    lk_tokenizer_free(t);
    rm_rf(dir);
    free(dir);
    cJSON_Delete(root);
}

static void test_detect(void **st)
{
    (void)st;
    static const struct {
        const char *dir;
        lk_chat_format f;
    } want[] = {{"models/qwen2.5-tokenizer", LK_CHAT_QWEN2_5},
                {"models/llama-3.2-3b-instruct", LK_CHAT_LLAMA3_1},
                {"models/mistral-7b-instruct-v0.2", LK_CHAT_MISTRAL}};
    for (int i = 0; i < 3; i++) {
        lk_tokenizer *t = load(want[i].dir);
        lk_chat_format f;
        assert_ok(lk_chat_detect(t, &f));
        assert_int_equal(f, want[i].f);
        lk_tokenizer_free(t);
    }
    /* no chat_template: a clear error that names the option */
    lk_tokenizer *t = load("models/llama2-tokenizer");
    lk_chat_format f;
    assert_status(lk_chat_detect(t, &f), LK_ERR_UNSUPPORTED, "--chat-template");
    struct lk_chat_message m = {"user", "hi"};
    char *out;
    assert_status(lk_chat_render(t, NULL, &m, 1, &out, NULL), LK_ERR_UNSUPPORTED,
                  "--chat-template");
    lk_tokenizer_free(t);
    assert_status(lk_chat_format_from_name("vicuna", &f), LK_ERR_ARG, "chatml");
    assert_ok(lk_chat_format_from_name("llama3.2", &f));
    assert_int_equal(f, LK_CHAT_LLAMA3_1);
}

/* The token that ends an assistant turn, by template: the ids the models' generation_config.json
 * files list as eos (Qwen2.5 <|im_end|> 151645, Llama-3.2 <|eot_id|> 128009, Mistral </s> 2). */
static void test_end_of_turn(void **st)
{
    (void)st;
    static const struct {
        const char *dir;
        lk_chat_format f;
        int32_t id;
    } want[] = {{"models/qwen2.5-tokenizer", LK_CHAT_AUTO, 151645},
                {"models/llama-3.2-3b-instruct", LK_CHAT_AUTO, 128009},
                {"models/llama-3.2-3b-instruct", LK_CHAT_LLAMA3, 128009},
                {"models/mistral-7b-instruct-v0.2", LK_CHAT_AUTO, 2},
                {"models/llama2-tokenizer", LK_CHAT_LLAMA2, 2},
                {"models/llama2-tokenizer", LK_CHAT_ALPACA, 2}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        lk_tokenizer *t = load(want[i].dir);
        int32_t id = -1;
        assert_ok(lk_chat_end_of_turn(t, want[i].f, &id));
        assert_int_equal(id, want[i].id);
        lk_tokenizer_free(t);
    }
    /* a ChatML template on a vocabulary without <|im_end|>, and no template at all */
    lk_tokenizer *t = load("models/llama2-tokenizer");
    int32_t id;
    assert_status(lk_chat_end_of_turn(t, LK_CHAT_CHATML, &id), LK_ERR_UNSUPPORTED, "<|im_end|>");
    assert_status(lk_chat_end_of_turn(t, LK_CHAT_AUTO, &id), LK_ERR_UNSUPPORTED, "--chat-template");
    lk_tokenizer_free(t);
}

/* Spans cover each trained assistant answer plus its end-of-turn token, nothing else. */
static void test_spans(void **st)
{
    (void)st;
    const struct chat_msg m[] = {{"system", "S", NULL},
                                 {"user", "Q1", NULL},
                                 {"assistant", " A1 ", NULL},
                                 {"user", "Q2", NULL},
                                 {"assistant", "A2", NULL}};
    const int train[] = {1, 1, 0, 1, 1};
    static const struct {
        const char *dir;
        lk_chat_format f;
        const char *span0, *span1;
    } cases[] = {
        {"models/qwen2.5-tokenizer", LK_CHAT_QWEN2_5, " A1 <|im_end|>", "A2<|im_end|>"},
        {"models/llama-3.2-3b-instruct", LK_CHAT_LLAMA3, "A1<|eot_id|>", "A2<|eot_id|>"},
        {"models/llama2-tokenizer", LK_CHAT_LLAMA2, "A1 </s>", "A2 </s>"},
        {"models/llama2-tokenizer", LK_CHAT_ALPACA, " A1 </s>", "A2</s>"},
    };
    for (int k = 0; k < 4; k++) {
        lk_tokenizer *t = load(cases[k].dir);
        char *txt;
        size_t len;
        struct chat_span *sp;
        int64_t nsp;
        assert_ok(chat_render_spans(t, cases[k].f, NULL, 0, NULL, NULL, m, 5, NULL, &txt, &len, &sp,
                                    &nsp));
        assert_int_equal(nsp, 2);
        assert_true(sp[0].end <= len && sp[1].end <= len);
        assert_int_equal(sp[0].end - sp[0].start, strlen(cases[k].span0));
        assert_memory_equal(txt + sp[0].start, cases[k].span0, strlen(cases[k].span0));
        assert_memory_equal(txt + sp[1].start, cases[k].span1, strlen(cases[k].span1));
        free(txt);
        free(sp);
        /* a turn with train 0 gives no span */
        assert_ok(chat_render_spans(t, cases[k].f, NULL, 0, NULL, NULL, m, 5, train, &txt, &len,
                                    &sp, &nsp));
        assert_int_equal(nsp, 1);
        assert_memory_equal(txt + sp[0].start, cases[k].span1, strlen(cases[k].span1));
        free(txt);
        free(sp);
        lk_tokenizer_free(t);
    }
}

static void test_bad_messages(void **st)
{
    (void)st;
    lk_tokenizer *t = load("models/qwen2.5-tokenizer");
    struct lk_chat_params p = lk_chat_params_default();
    char *out;
    const struct lk_chat_message bad[] = {{"user", "x"}, {"narrator", "y"}};
    assert_status(lk_chat_render(t, &p, bad, 2, &out, NULL), LK_ERR_ARG,
                  "message 1 has role 'narrator' (expected system, user, assistant or tool)");
    const struct lk_chat_message nul[] = {{"user", NULL}};
    assert_status(lk_chat_render(t, &p, nul, 1, &out, NULL), LK_ERR_ARG, "content");
    /* tool turns need a template that writes them; calls belong to assistant turns */
    const struct lk_chat_message tool[] = {{"user", "x"}, {"assistant", ""}, {"tool", "{}"}};
    const char *calls[] = {NULL, "{\"name\": \"f\"}", NULL}, *two[] = {NULL,
                                                                       "[{\"name\": "
                                                                       "\"f\"}, {\"name\": \"g\"}]",
                                                                       NULL};
    p.tool_calls = calls;
    p.format = LK_CHAT_LLAMA2;
    assert_status(lk_chat_render(t, &p, tool, 3, &out, NULL), LK_ERR_ARG,
                  "chat llama2: message 1: the template has no tool calls");
    p.format = LK_CHAT_QWEN2_5;
    const char *on_user[] = {"{\"name\": \"f\"}", NULL, NULL};
    p.tool_calls = on_user;
    assert_status(lk_chat_render(t, &p, tool, 3, &out, NULL), LK_ERR_ARG,
                  "only an assistant turn makes tool calls");
    p.tool_calls = two;
    p.format = LK_CHAT_LLAMA3_1;
    assert_status(lk_chat_render(t, &p, tool, 3, &out, NULL), LK_ERR_ARG,
                  "only supports single tool-calls at once");
    p.tools = "{\"name\": \"f\"}";
    assert_status(lk_chat_render(t, &p, tool, 3, &out, NULL), LK_ERR_ARG, "JSON array of objects");
    lk_tokenizer_free(t);
}

/* The public API writes tools and calls as Qwen2.5's template does (arguments given as a JSON
 * string parsed; Python's json.dumps spacing, floats as its repr, non-ASCII kept). */
static void test_tool_render(void **st)
{
    (void)st;
    lk_tokenizer *t = load("models/qwen2.5-tokenizer");
    struct lk_chat_params p = lk_chat_params_default();
    const struct lk_chat_message m[] = {{"user", "Zürich?"}, {"assistant", ""}, {"tool", "21"}};
    const char *calls[] = {NULL,
                           "[{\"type\": \"function\", \"function\": {\"name\": \"w\", "
                           "\"arguments\": \"{\\\"city\\\":\\\"Zürich\\\",\\\"t\\\":1e-5,"
                           "\\\"n\\\":[2,0.5]}\"}}]",
                           NULL};
    p.tool_calls = calls;
    p.tools = "[{\"name\":\"w\",\"parameters\":{}}]";
    p.add_generation_prompt = 1;
    char *out;
    assert_ok(lk_chat_render(t, &p, m, 3, &out, NULL));
    const char *want =
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
        "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n"
        "<tools>\n{\"name\": \"w\", \"parameters\": {}}\n</tools>\n\nFor each function call, "
        "return a json object with function name and arguments within <tool_call></tool_call> "
        "XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nZürich?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": "
        "\"Zürich\", \"t\": 1e-05, \"n\": [2, 0.5]}}\n</tool_call><|im_end|>\n<|im_start|>user"
        "\n<tool_response>\n21\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
    assert_string_equal(out, want);
    free(out);
    lk_tokenizer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),    cmocka_unit_test(test_detect),
        cmocka_unit_test(test_spans),       cmocka_unit_test(test_bad_messages),
        cmocka_unit_test(test_tool_render), cmocka_unit_test(test_end_of_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
