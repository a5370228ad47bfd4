/* test_params.c — the library's option tables and checks: every name table round-trips (name →
 * value → name, and the value past the table has no name), the defaults pass their checks, and
 * each check reports the first bad option with its exact message (the words the tools print as
 * usage errors). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

/* Assert expr fails with LK_ERR_ARG and exactly the message want. */
#define assert_message(expr, want)                                                             \
    do {                                                                                       \
        lk_status s_ = (expr);                                                                 \
        if (s_ != LK_ERR_ARG)                                                                  \
            fail_msg("%s -> %s, expected %s", #expr, lk_status_str(s_),                        \
                     lk_status_str(LK_ERR_ARG));                                               \
        if (strcmp(lk_last_error(), (want)) != 0)                                              \
            fail_msg("%s: message\n  '%s'\nexpected\n  '%s'", #expr, lk_last_error(), (want)); \
    } while (0)

/* ---- name tables ---- */

/* name → value → name for each of names[n], and one value past the table named "?". The table
 * functions come in through two small adaptors, since each has its own enum type. */
typedef lk_status (*from_fn)(const char *, int *);
typedef const char *(*name_fn)(int);

static void round_trip(const char *const *names, int n, from_fn from, name_fn name)
{
    for (int i = 0; i < n; i++) {
        int v = -1;
        assert_ok(from(names[i], &v));
        assert_int_equal(v, i);
        assert_string_equal(name(v), names[i]);
    }
    assert_string_equal(name(n), "?");
    int v;
    assert_int_equal(from("no-such-name", &v), LK_ERR_ARG);
}

#define ADAPT(T, from, name)                           \
    static lk_status from##_i(const char *s, int *out) \
    {                                                  \
        T v;                                           \
        lk_status st = from(s, &v);                    \
        if (st == LK_OK)                               \
            *out = (int)v;                             \
        return st;                                     \
    }                                                  \
    static const char *name##_i(int v)                 \
    {                                                  \
        return name((T)v);                             \
    }

ADAPT(lk_optimizer, lk_optimizer_from_name, lk_optimizer_name)
ADAPT(lk_schedule, lk_schedule_from_name, lk_schedule_name)
ADAPT(lk_objective, lk_objective_from_name, lk_objective_name)
ADAPT(lk_lora_init, lk_lora_init_from_name, lk_lora_init_name)
ADAPT(lk_checkpointing, lk_checkpointing_from_name, lk_checkpointing_name)
ADAPT(lk_qtype, lk_qtype_from_name, lk_qtype_name)
ADAPT(lk_qformat, lk_qformat_from_name, lk_qformat_name)

static void test_name_tables(void **state)
{
    (void)state;
    static const char *const opt[] = {"adamw", "sgd"};
    static const char *const sched[] = {"cosine", "linear", "constant"};
    static const char *const obj[] = {"sft", "kd", "rkl", "jsd"};
    static const char *const init[] = {"peft", "loftq"};
    static const char *const ckpt[] = {"off", "on", "auto"};
    static const char *const qt[] = {"f32",  "f16",  "bf16", "q4_0",  "q8_0", "iq4_nl",
                                     "nf4",  "q4_1", "q5_0", "q5_1",  "q2_k", "q3_k",
                                     "q4_k", "q5_k", "q6_k", "iq4_xs"};
    static const char *const qf[] = {"lorakit", "gguf", "hf-bnb"};
    round_trip(opt, 2, lk_optimizer_from_name_i, lk_optimizer_name_i);
    round_trip(sched, 3, lk_schedule_from_name_i, lk_schedule_name_i);
    round_trip(obj, 4, lk_objective_from_name_i, lk_objective_name_i);
    round_trip(init, 2, lk_lora_init_from_name_i, lk_lora_init_name_i);
    round_trip(ckpt, 3, lk_checkpointing_from_name_i, lk_checkpointing_name_i);
    round_trip(qt, LK_QTYPE_COUNT, lk_qtype_from_name_i, lk_qtype_name_i);
    round_trip(qf, 3, lk_qformat_from_name_i, lk_qformat_name_i);
    lk_qtype q;
    assert_ok(lk_qtype_from_name("none", &q)); /* the command lines' unquantised base */
    assert_int_equal(q, LK_QTYPE_F32);
    for (int f = LK_CHAT_CHATML; f <= LK_CHAT_ALPACA; f++) {
        lk_chat_format g;
        assert_ok(lk_chat_format_from_name(lk_chat_format_name((lk_chat_format)f), &g));
        assert_int_equal(g, f);
    }
    lk_optimizer o;
    assert_message(lk_optimizer_from_name("adam", &o), "--optimizer 'adam': expected adamw or sgd");
    lk_lora_init i;
    assert_message(lk_lora_init_from_name("svd", &i), "--init 'svd': expected peft or loftq");
    lk_qformat f;
    assert_message(lk_qformat_from_name("onnx", &f),
                   "--format 'onnx': expected lorakit, gguf or hf-bnb");
    lk_checkpointing c;
    assert_message(lk_checkpointing_from_name("yes", &c),
                   "--checkpointing 'yes': expected auto, on or off");
    assert_int_equal(lk_train_params_default().checkpointing, LK_CKPT_AUTO);
}

/* --memory-limit sizes: bytes or a binary K, M, G, T suffix (B and iB after it read too). */
static void test_memory_limit(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t bytes;
    } good[] = {{"4096", 4096},        {"1K", 1024},       {"512M", 512LL << 20}, {"3G", 3LL << 30},
                {"1.5GiB", 3LL << 29}, {"2TB", 2LL << 40}, {"0.5K", 512}};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        int64_t b = -1;
        assert_ok(lk_memory_limit_from_name(good[i].text, &b));
        assert_int_equal(b, good[i].bytes);
    }
    static const char *const bad[] = {"", "G", "3X", "3Gx", "-1G", "0", "0.1", "nan", "1e30"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t b = 7;
        assert_status(lk_memory_limit_from_name(bad[i], &b), LK_ERR_ARG, "--memory-limit");
        assert_int_equal(b, 7);
    }
}

static void test_targets(void **state)
{
    (void)state;
    static const char *const lists[] = {"q", "q,v", "k,o,down", "gate,up,down", "all"};
    char buf[64];
    unsigned m;
    for (int i = 0; i < 5; i++) {
        assert_ok(lk_targets_from_name(lists[i], &m));
        assert_string_equal(lk_targets_name(m, buf, sizeof buf), lists[i]);
    }
    for (unsigned mask = 1; mask <= LK_MOD_ALL; mask++) { /* every mask: value → name → value */
        assert_ok(lk_targets_from_name(lk_targets_name(mask, buf, sizeof buf), &m));
        assert_int_equal(m, mask);
    }
    assert_ok(lk_targets_from_name("q_proj,down_proj", &m));
    assert_int_equal(m, (1u << LK_MOD_Q) | (1u << LK_MOD_DOWN));
    assert_ok(lk_targets_from_name("all-linear", &m));
    assert_int_equal(m, LK_MOD_ALL);
    assert_string_equal(lk_targets_name(LK_MOD_ALL, buf, 3), ""); /* no room: nothing, not "al" */
    assert_message(lk_targets_from_name("q,zz", &m),
                   "--targets: unknown module 'zz' (use q,k,v,o,gate,up,down, their *_proj names, "
                   "or all)");
    assert_message(lk_targets_from_name("", &m),
                   "--targets: empty list (use q,k,v,o,gate,up,down or all)");
}

/* ---- checks ---- */

static void test_defaults_pass(void **state)
{
    (void)state;
    struct lk_train_params tp = lk_train_params_default();
    struct lk_model_params mp = lk_train_model_params_default();
    struct lk_dataset_params dp = lk_train_data_params_default();
    struct lk_sampler_params sp = lk_sampler_params_default();
    struct lk_teacher_params th = lk_teacher_params_default();
    struct lk_quantize_params qp = lk_quantize_params_default();
    struct lk_merge_params me = lk_merge_params_default();
    struct lk_adapter_params ap = lk_adapter_params_default();
    struct lk_adapter_params rp = lk_adapter_params_random(LK_RANDOM_ADAPTER_RANK);
    struct lk_run_params run = lk_run_params_default();
    assert_ok(lk_train_params_check(&tp, &mp));
    assert_ok(lk_train_data_params_check(&dp));
    assert_ok(lk_model_params_check(&mp));
    struct lk_model_params md = lk_model_params_default();
    assert_ok(lk_model_params_check(&md));
    assert_ok(lk_sampler_params_check(&sp));
    assert_ok(lk_teacher_params_check(&th, NULL));
    assert_ok(lk_quantize_params_check(&qp));
    assert_ok(lk_merge_params_check(&me));
    assert_ok(lk_adapter_params_check(&ap));
    assert_ok(lk_adapter_params_check(&rp));
    assert_ok(lk_run_params_check(&run));
    struct lk_dataset_params dd = lk_dataset_params_default();
    assert_ok(lk_dataset_params_check(&dd));
    /* the defaults the tools have always had */
    assert_int_equal(tp.rank, 8);
    assert_true(tp.alpha == 0); /* the rank */
    assert_int_equal(mp.quant, LK_QTYPE_NF4);
    assert_int_equal(dp.seq_len, 512);
    assert_int_equal(dd.seq_len, 2048);
    assert_int_equal(run.save_limit, 2);
    assert_true(sp.temperature == 0.8f && sp.top_p == 0.95f && sp.top_k == 40);
    assert_int_equal(rp.rank, 16);
    assert_true(rp.alpha == 32 && rp.init_std_b == 0.01);
}

/* One bad field at a time on top of the defaults: the check names it with its value. */
static void test_train_check(void **state)
{
    (void)state;
    const struct lk_train_params d = lk_train_params_default();
    struct lk_train_params p;
#define BAD(field, value, want)                                \
    do {                                                       \
        p = d;                                                 \
        p.field = value;                                       \
        assert_message(lk_train_params_check(&p, NULL), want); \
    } while (0)
    BAD(rank, 0, "--rank must be at least 1, got 0");
    BAD(rank, -3, "--rank must be at least 1, got -3");
    BAD(alpha, -1, "--alpha must be a finite value >= 0 (0: the rank), got -1");
    BAD(alpha, NAN, "--alpha must be a finite value >= 0 (0: the rank), got nan");
    BAD(dropout, 1, "--dropout must be in [0, 1), got 1");
    BAD(dropout, -0.5f, "--dropout must be in [0, 1), got -0.5");
    BAD(targets, 0, "--targets: expected some of q,k,v,o,gate,up,down, got the bits 0x0");
    BAD(init, (lk_lora_init)7, "--init: adapter start 7 is not peft (0) or loftq (1)");
    BAD(optimizer, (lk_optimizer)5, "--optimizer 5: expected adamw or sgd");
    BAD(lr, 0, "--lr must be a finite value above 0, got 0");
    BAD(lr, INFINITY, "--lr must be a finite value above 0, got inf");
    BAD(lr_ratio_b, -2, "--lr-ratio-b must be a finite value above 0, got -2");
    BAD(weight_decay, -0.1f, "--weight-decay must be at least 0, got -0.1");
    BAD(beta2, 1, "beta2 must be in [0, 1), got 1");
    BAD(eps, 0, "eps must be above 0, got 0");
    BAD(schedule, (lk_schedule)3, "--schedule 3: expected cosine, linear or constant");
    BAD(warmup_steps, -1, "--warmup must be at least 0, got -1");
    BAD(steps, -5, "--steps must be at least 0 (0: from --epochs), got -5");
    BAD(epochs, 0, "--epochs must be a finite value above 0, got 0");
    BAD(batch, 0, "--batch must be at least 1, got 0");
    BAD(grad_accum, -1, "--grad-accum must be at least 1, got -1");
    BAD(max_bad_steps, 0, "max_bad_steps must be at least 1, got 0");
    BAD(objective, (lk_objective)9, "--objective 9: expected sft, kd, rkl or jsd");
    BAD(kd_temp, 0, "--kd-temp must be in (0, 100], got 0");
    BAD(kd_temp, 101, "--kd-temp must be in (0, 100], got 101");
    BAD(kd_weight, 1.5f, "--kd-weight must be in [0, 1], got 1.5");
    BAD(jsd_beta, -0.25f, "--jsd-beta must be in [0, 1], got -0.25");
#undef BAD
    /* with steps given, epochs is not used */
    p = d;
    p.steps = 3;
    p.epochs = 0;
    assert_ok(lk_train_params_check(&p, NULL));
    /* the first bad option in the order of the table above is the one reported */
    p = d;
    p.lr = 0;
    p.rank = 0;
    p.batch = 0;
    assert_message(lk_train_params_check(&p, NULL),
                   "--rank must be at least 1, got 0");
    /* combinations, and the base */
    p = d;
    p.init = LK_INIT_LOFTQ;
    p.init_adapter = "A";
    assert_message(lk_train_params_check(&p, NULL),
                   "--init loftq and --init-adapter A exclude each other (the adapter starts as "
                   "the one given)");
    p.init_adapter = NULL;
    struct lk_model_params mp = lk_model_params_default(); /* f32 */
    assert_ok(lk_train_params_check(&p, NULL));
    assert_message(lk_train_params_check(&p, &mp),
                   "--init loftq needs a quantised base: with --quant none the quantisation "
                   "residual W - Q(W) is zero");
    mp.quant = LK_QTYPE_F16;
    assert_message(lk_train_params_check(&d, &mp),
                   "--quant 'f16': expected none (f32), nf4, q4_0, iq4_nl or q8_0");
}

static void test_data_check(void **state)
{
    (void)state;
    struct lk_dataset_params p = lk_train_data_params_default();
    p.seq_len = 1;
    assert_ok(lk_dataset_params_check(&p)); /* a dataset may have rows of one token */
    assert_message(lk_train_data_params_check(&p),
                   "--seq-len must be at least 2, got 1"); /* training may not */
    p.seq_len = 0;
    assert_message(lk_train_data_params_check(&p),
                   "--seq-len must be at least 1, got 0");
    p = lk_dataset_params_default();
    p.chat_format = (lk_chat_format)12;
    assert_message(lk_dataset_params_check(&p),
                   "--chat-template 12: expected chatml, qwen2.5, llama3, llama3.1, llama2, "
                   "mistral or alpaca");
    p = lk_dataset_params_default();
    p.fields = "prompt=question,completion=answer";
    assert_ok(lk_dataset_params_check(&p));
    p.fields = "prompt=question,answer";
    assert_message(lk_dataset_params_check(&p),
                   "--fields: 'answer' is not KEY=COLUMN with KEY one of text, prompt, "
                   "completion, messages, conversations, instruction, input, output, input_ids, "
                   "labels, tools");
    p = lk_dataset_params_default();
    p.format = (lk_data_format)LK_DATA_N_FORMATS;
    assert_message(lk_dataset_params_check(&p),
                   "format 6: expected auto, messages, tokens, alpaca, prompt_completion or text");
}

static void test_model_and_sampler_checks(void **state)
{
    (void)state;
    struct lk_model_params mp = lk_model_params_default();
    mp.quant_embed = LK_QTYPE_Q4_0;
    assert_message(lk_model_params_check(&mp), "--quant-embed 'q4_0': expected f32 or q8_0");
    const struct lk_sampler_params d = lk_sampler_params_default();
    struct lk_sampler_params sp = d;
    sp.temperature = -1;
    assert_message(lk_sampler_params_check(&sp),
                   "--temp must be a finite value >= 0 (0: greedy), got -1");
    sp = d;
    sp.top_p = 0;
    assert_message(lk_sampler_params_check(&sp), "--top-p must be in (0, 1], got 0");
    sp = d;
    sp.top_k = -1;
    assert_message(lk_sampler_params_check(&sp),
                   "--top-k must be at least 0 (0: all), got -1");
    lk_sampler *s = NULL;
    assert_message(lk_sampler_create(&sp, &s), "--top-k must be at least 0 (0: all), "
                                               "got -1"); /* the constructor runs the check */
    assert_null(s);
}

static void test_teacher_check(void **state)
{
    (void)state;
    struct lk_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab_size = 512;
    const struct lk_teacher_params d = lk_teacher_params_default();
    struct lk_teacher_params p = d;
    p.top_k = 0;
    assert_message(lk_teacher_params_check(&p, NULL),
                   "--top-k must be at least 1, got 0");
    p = d;
    p.temp = 0;
    assert_message(lk_teacher_params_check(&p, NULL),
                   "--kd-temp must be above 0 (at most 1e6), got 0");
    p = d;
    p.top_k = 512;
    assert_ok(lk_teacher_params_check(&p, NULL)); /* the vocabulary is not known yet */
    assert_message(lk_teacher_params_check(&p, &cfg),
                   "--top-k must be between 1 and 511 (below the vocabulary of 512 ids), "
                   "got 512");
    p = d;
    p.vocab = 513;
    assert_message(lk_teacher_params_check(&p, &cfg),
                   "--vocab must be between 2 and 512 (the model's vocab_size), got 513");
    p.vocab = 100;
    p.top_k = 100;
    assert_message(lk_teacher_params_check(&p, &cfg),
                   "--top-k must be between 1 and 99 (below the vocabulary of 100 ids), "
                   "got 100");
}

static void test_output_checks(void **state)
{
    (void)state;
    struct lk_quantize_params q = lk_quantize_params_default();
    q.type = LK_QTYPE_F16;
    assert_message(lk_quantize_params_check(&q),
                   "--type 'f16': expected nf4, q4_0, iq4_nl, q8_0, or for --format gguf q4_1, "
                   "q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs");
    q = lk_quantize_params_default();
    q.format = LK_QFORMAT_GGUF;
    assert_message(lk_quantize_params_check(&q),
                   "--format gguf: GGUF has no NF4 type (use --type q4_0, iq4_nl or q8_0, or "
                   "--format lorakit / hf-bnb for nf4)");
    q = lk_quantize_params_default();
    q.double_quant = 1;
    assert_message(lk_quantize_params_check(&q), "--double-quant applies to --format hf-bnb only");
    struct lk_merge_params m = lk_merge_params_default();
    m.dtype = "f8";
    assert_message(lk_merge_params_check(&m),
                   "--dtype 'f8': expected f32, f16, bf16, q8_0, q4_0, iq4_nl, nf4, q4_1, q5_0, "
                   "q5_1, q2_k, q3_k, q4_k, q5_k, q6_k or iq4_xs");
    m.dtype = "q4_0"; /* a name the check knows; whether an output holds it is lk_merge's call */
    assert_ok(lk_merge_params_check(&m));
    m.base_quant = "nf5";
    assert_message(lk_merge_params_check(&m),
                   "--base-quant 'nf5': expected nf4, q4_0, iq4_nl or q8_0");
    struct lk_adapter_params a = lk_adapter_params_random(4);
    assert_int_equal(a.rank, 4);
    assert_true(a.alpha == 8);
    a.init_std_b = -1;
    assert_message(lk_adapter_params_check(&a),
                   "--std-b must be a finite value >= 0, got -1");
    a = lk_adapter_params_random(0);
    assert_message(lk_adapter_params_check(&a), "--rank must be at least 1, got 0");
    struct lk_run_params r = lk_run_params_default();
    r.save_limit = -1;
    assert_message(lk_run_params_check(&r),
                   "--save-limit must be at least 0 (0: keep every checkpoint), "
                   "got -1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_tables),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_defaults_pass),
        cmocka_unit_test(test_train_check),
        cmocka_unit_test(test_data_check),
        cmocka_unit_test(test_model_and_sampler_checks),
        cmocka_unit_test(test_teacher_check),
        cmocka_unit_test(test_output_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
