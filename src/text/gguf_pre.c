/* gguf_pre.c — llama.cpp's pre-tokenizers for byte-level BPE vocabularies ("gpt2"), by the
 * `tokenizer.ggml.pre` name, as src/llama-vocab.cpp of llama.cpp 0c1e57098 (the version vendored
 * by llama-cpp-python 0.3.36, the peer of tests/gen/gen_gguf_tok.py) lists them: the regex lists
 * of llm_tokenizer_bpe's constructor (strings kept exactly as llama.cpp writes them; comments name
 * its LLAMA_VOCAB_PRE_TYPE_*), and the names, with the flags they set, of
 * llama_vocab::impl::load. Every regex splits each piece the previous ones left into matches and
 * the text between them. llama.cpp runs the GPT-2, Llama-3, Qwen2 and Qwen3.5 regexes through
 * hand-written equivalents and the others through std::regex on text whose non-ASCII characters
 * are collapsed to their Unicode category; tokenizer_gguf.c compiles them with PCRE2 so that they
 * mean the same (see there). Pure data: calls into nothing. */
#include "text/gguf_pre.h"

#include <stddef.h>
#include <string.h>

/* LLAMA_VOCAB_PRE_TYPE_DEFAULT (also a missing tokenizer.ggml.pre) */
static const char *const R_DEFAULT[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+",
    "[0-9][0-9][0-9]", NULL};
/* GPT2, MPT, OLMO, JAIS, TRILLION, GRANITE_DOCLING */
static const char *const R_GPT2[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", NULL};
/* STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL, EXAONE, MINERVA, MELLUM2 */
static const char *const R_STARCODER[] = {
    "\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL};
/* FALCON */
static const char *const R_FALCON[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]", NULL};
/* LLAMA3, DBRX, SMAUG, CHATGLM4 (the adapted form of the tokenizer.json regex) */
static const char *const R_LLAMA3[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* JAIS2 */
static const char *const R_JAIS2[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|"
    "\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{"
    "1}",
    NULL};
/* QWEN2, STABLELM2, HUNYUAN, SOLAR_OPEN, GROK_2 */
static const char *const R_QWEN2[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* QWEN35 */
static const char *const R_QWEN35[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]"
    "+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* MINICPM5 */
static const char *const R_MINICPM5[] = {
    "\\p{N}{1,3}",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* DEEPSEEK_LLM */
static const char *const R_DEEPSEEK_LLM[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-"
    "ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-"
    "ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-"
    "𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
    NULL};
/* DEEPSEEK_CODER */
static const char *const R_DEEPSEEK_CODER[] = {
    "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}", NULL};
/* DEEPSEEK3_LLM, HUNYUAN_DENSE, JOYAI_LLM, HY_V4 */
static const char *const R_DEEPSEEK3_LLM[] = {
    "\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* SPARK2_5 */
static const char *const R_SPARK2_5[] = {
    "\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    "\\p{N}", NULL};
/* YOUTU */
static const char *const R_YOUTU[] = {
    "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]"
    "+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'["
    "sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}"
    "\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'"
    "[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* PORO, BLOOM, GPT3_FINNISH */
static const char *const R_PORO[] = {" ?[^(\\s|.,!?…。，、।۔،)]+", NULL};
/* VIKING */
static const char *const R_VIKING[] = {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}", NULL};
/* TEKKEN */
static const char *const R_TEKKEN[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?"
    "=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* CHAMELEON */
static const char *const R_CHAMELEON[] = {
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL};
/* GPT4O, MINIMAX_M2 */
static const char *const R_GPT4O[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'"
    "[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^"
    "A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* GRANITE_EMB_MULTI */
static const char *const R_GRANITE_EMB_MULTI[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]"
    "|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z])"
    ")+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{"
    "N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* TINY_AYA: the first entry is run by the digit-group splitter */
static const char *const R_TINY_AYA[] = {
    "\\d{1,3}(?=(?:\\d{3})*\\b)",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'["
    "sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}"
    "\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'"
    "[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* SUPERBPE */
static const char *const R_SUPERBPE[] = {"\\p{N}+", "(?=(\\d{3})+(?!\\d))", NULL};
/* BAILINGMOE */
static const char *const R_BAILINGMOE[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
/* SEED_CODER */
static const char *const R_SEED_CODER[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* UFAKZEKA */
static const char *const R_UFAKZEKA[] = {
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* AFMOE: the first entry is run by the digit-group splitter */
static const char *const R_AFMOE[] = {
    "\\p{AFMoE_digits}",
    "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]"
    "+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* LAGUNA */
static const char *const R_LAGUNA[] = {
    "[^\\n]+|[\\n]+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
/* EXAONE_MOE */
static const char *const R_EXAONE_MOE[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{"
    "M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
/* name -> regexes and flags, in llama_vocab::impl::load's order. C: clean_up_tokenization_spaces
 * (BPE's default; the names that turn it off have no C). */
#define C   TOK_PRE_CLEAN_SPACES
#define IM  TOK_PRE_IGNORE_MERGES
#define BOS TOK_PRE_ADD_BOS
#define DG  TOK_PRE_DIGIT_GROUPS
static const struct {
    const char *name;
    struct tok_gguf_pre pre;
} g_pre[] = {
    {"default", {R_DEFAULT, C, NULL}},
    {"minicpm5", {R_MINICPM5, C | IM, NULL}},
    {"llama3", {R_LLAMA3, C | IM | BOS, NULL}},
    {"llama-v3", {R_LLAMA3, C | IM | BOS, NULL}},
    {"llama-bpe", {R_LLAMA3, C | IM | BOS, NULL}},
    {"falcon3", {R_LLAMA3, C | IM | BOS, NULL}},
    {"falcon-h1", {R_LLAMA3, C | IM | BOS, NULL}},
    {"pixtral", {R_LLAMA3, C | IM | BOS, NULL}},
    {"midm-2.0", {R_LLAMA3, C | IM | BOS, NULL}},
    {"lfm2", {R_LLAMA3, C | IM | BOS, NULL}},
    {"jina-v5-nano", {R_LLAMA3, C | IM | BOS, NULL}},
    {"deepseek-llm", {R_DEEPSEEK_LLM, 0, NULL}},
    {"deepseek-coder", {R_DEEPSEEK_CODER, 0, NULL}},
    {"deepseek-v3", {R_DEEPSEEK3_LLM, 0, NULL}},
    {"spark2_5", {R_SPARK2_5, 0, NULL}},
    {"youtu", {R_YOUTU, IM, NULL}},
    {"falcon", {R_FALCON, C, NULL}},
    {"mpt", {R_GPT2, C, NULL}},
    {"starcoder", {R_STARCODER, C, NULL}},
    {"gpt-2", {R_GPT2, C, NULL}},
    {"phi-2", {R_GPT2, C, NULL}},
    {"jina-es", {R_GPT2, C, NULL}},
    {"jina-de", {R_GPT2, C, NULL}},
    {"gigachat", {R_GPT2, C, NULL}},
    {"jina-v2-es", {R_GPT2, C, NULL}},
    {"jina-v2-de", {R_GPT2, C, NULL}},
    {"a.x-4.0", {R_GPT2, C, NULL}},
    {"mellum", {R_GPT2, C, NULL}},
    {"modern-bert", {R_GPT2, C, NULL}},
    {"jais-2", {R_JAIS2, C, NULL}},
    {"gemma4", {NULL, 0, "SentencePiece-style BPE over raw UTF-8 with <0xXX> byte tokens"}},
    {"granite-embed-multi-311m",
     {NULL, 0, "SentencePiece-style BPE over raw UTF-8 with <0xXX> byte tokens"}},
    {"sarvam-moe", {NULL, 0, "SentencePiece-style BPE over raw UTF-8 with <0xXX> byte tokens"}},
    {"jina-v1-en", {R_GPT2, C, NULL}},
    {"jina-v2-code", {R_GPT2, C, NULL}},
    {"roberta-bpe", {R_GPT2, C, NULL}},
    {"whitespace", {NULL, 0, "the whitespace tokenizer"}},
    {"refact", {R_STARCODER, C, NULL}},
    {"command-r", {R_STARCODER, 0, NULL}},
    {"qwen2", {R_QWEN2, 0, NULL}},
    {"deepseek-r1-qwen", {R_QWEN2, 0, NULL}},
    {"kormo", {R_QWEN2, 0, NULL}},
    {"f2llmv2", {R_QWEN2, 0, NULL}},
    {"qwen35", {R_QWEN35, 0, NULL}},
    {"stablelm2", {R_QWEN2, C, NULL}},
    {"olmo", {R_GPT2, C, NULL}},
    {"dbrx", {R_LLAMA3, C, NULL}},
    {"smaug-bpe", {R_LLAMA3, C, NULL}},
    {"poro-chat", {R_PORO, 0, NULL}},
    {"chatglm-bpe", {R_LLAMA3, C | TOK_PRE_NO_BOS, NULL}},
    {"glm4", {R_LLAMA3, C | TOK_PRE_NO_BOS | IM, NULL}},
    {"glm5", {R_LLAMA3, C | TOK_PRE_NO_BOS | IM, NULL}},
    {"viking", {R_VIKING, 0, NULL}},
    {"jais", {R_GPT2, C, NULL}},
    {"tekken", {R_TEKKEN, IM | BOS, NULL}},
    {"smollm", {R_STARCODER, 0, NULL}},
    {"codeshell", {R_STARCODER, C, NULL}},
    {"bloom", {R_PORO, C, NULL}},
    {"gpt3-finnish", {R_PORO, C, NULL}},
    {"exaone", {R_STARCODER, C, NULL}},
    {"exaone4", {R_GPT2, C, NULL}},
    {"exaone-moe", {R_EXAONE_MOE, C, NULL}},
    {"chameleon", {R_CHAMELEON, BOS, NULL}},
    {"minerva-7b", {R_STARCODER, C, NULL}},
    {"megrez", {R_QWEN2, C, NULL}},
    {"gpt-4o", {R_GPT4O, 0, NULL}},
    {"llama4", {R_GPT4O, 0, NULL}},
    {"kanana2", {R_GPT4O, 0, NULL}},
    {"talkie", {R_GPT4O, 0, NULL}},
    {"granite-embed-multi-97m", {R_GRANITE_EMB_MULTI, IM, NULL}},
    {"tiny_aya", {R_TINY_AYA, DG, NULL}},
    {"cohere2moe", {R_TINY_AYA, DG, NULL}},
    {"superbpe", {R_SUPERBPE, 0, NULL}},
    {"trillion", {R_GPT2, 0, NULL}},
    {"granite-docling", {R_GPT2, 0, NULL}},
    {"bailingmoe", {R_BAILINGMOE, 0, NULL}},
    {"bailingmoe2", {R_BAILINGMOE, 0, NULL}},
    {"llada-moe", {R_BAILINGMOE, 0, NULL}},
    {"seed-coder", {R_SEED_CODER, 0, NULL}},
    {"hunyuan", {R_QWEN2, 0, NULL}},
    {"hunyuan-dense", {R_DEEPSEEK3_LLM, 0, NULL}},
    {"hy_v4", {R_DEEPSEEK3_LLM, 0, NULL}},
    {"joyai-llm", {R_DEEPSEEK3_LLM, 0, NULL}},
    {"kimi-k2", {NULL, 0, "Kimi-K2's hand-written Han splitter"}},
    {"ufakzeka", {R_UFAKZEKA, 0, NULL}},
    {"grok-2", {R_QWEN2, 0, NULL}},
    {"afmoe", {R_AFMOE, DG, NULL}},
    {"laguna", {R_LAGUNA, 0, NULL}},
    {"minimax-m2", {R_GPT4O, 0, NULL}},
    {"solar-open", {R_QWEN2, 0, NULL}},
    {"mellum2", {R_STARCODER, C, NULL}},
};
#undef C
#undef IM
#undef BOS
#undef DG

const struct tok_gguf_pre *tok_gguf_pre_find(const char *name)
{
    for (size_t i = 0; i < sizeof g_pre / sizeof *g_pre; i++)
        if (strcmp(g_pre[i].name, name) == 0)
            return &g_pre[i].pre;
    return NULL;
}

const char *tok_gguf_pre_name(int i)
{
    return i >= 0 && (size_t)i < sizeof g_pre / sizeof *g_pre ? g_pre[i].name : NULL;
}
