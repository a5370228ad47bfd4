"""gen_dataset.py — dataset fixtures (tests/data/tok/ds/*.jsonl) and the expected ids/labels.

Run by hand (pip install tokenizers jinja2; used: tokenizers 0.23.3, jinja2 3.1.x):
    python3 tests/gen/gen_dataset.py ../shared tests/data/tok/ds
Expected sequences are built independently of lorakit, with Hugging Face tokenizers' character
offsets and the chat templates rendered by jinja2 (as transformers renders them):
  text              [BOS] text EOS               loss on text and EOS
  prompt/completion [BOS] prompt+completion EOS  loss on tokens overlapping the completion, EOS
  alpaca            Stanford prompt as the prompt, output as the completion
  messages          template text, loss on tokens overlapping each trained assistant answer plus
                    the end-of-turn token after it (found by searching the rendered text)
  input_ids/labels  as given
BOS only where the tokenizer adds one (Llama-2: add_bos_token; Llama-3: its post-processor)."""
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

shared, out = sys.argv[1], sys.argv[2]


def w(name, rows):
    with open(os.path.join(out, name), "w") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")


TEXT = [{"text": "Once upon a time, there was a llama."}, {"text": "Zwei  Leerzeichen\nund 你好 🦙"}]
PC = [{"prompt": "Q: 2+2?\nA:", "completion": " 4"},
      {"prompt": "Translate: cat", "completion": " -> Katze 猫"}]
ALPACA = [{"instruction": "Name a colour.", "input": "", "output": "Blue."},
          {"instruction": "Add the numbers.", "input": "3 and 4", "output": "7"}]
MESSAGES = [
    {"messages": [{"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello! How can I help?"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"},
                  {"role": "assistant", "content": " 6 "}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "value": "typed"}],
                   "loss_weight": 0.0},
                  {"role": "assistant", "content": [{"type": "text", "text": "parts "},
                                                    {"type": "text", "value": "joined"}],
                   "loss_weight": 1.0},
                  {"role": "user", "content": "again"},
                  {"role": "assistant", "content": "not trained", "loss_weight": 0.0},
                  {"role": "user", "content": "last"},
                  {"role": "assistant", "content": "trained"}]},
    {"conversations": [{"from": "human", "value": "sharegpt?"}, {"from": "gpt", "value": "yes"}]}]
TOKENS = [{"input_ids": [1, 2, 3, 4]}, {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}]
BAD = [{"text": "good line"}, '{"text": "unterminated', '', {"prompt": "no completion"},
       {"text": 42}, '[1, 2]', {"messages": [{"role": "user", "content": "no answer"}]},
       {"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]},
       {"input_ids": [1, 2], "labels": [1]}, {"input_ids": [1, 99999999]},
       {"question": "unmapped", "answer": "columns"}, {"text": "another good line"}, '   ',
       {"messages": [{"role": "user", "content": [{"type": "image", "url": "x"}]},
                     {"role": "assistant", "content": "y"}]}]
FIELDS = [{"question": "What is 6*7?", "answer": "6*7 = <<6*7=42>>42\n#### 42"}]
ARRAY = [{"instruction": "Say hi.", "input": "", "output": "Hi."}, {"bogus": 1},
         {"instruction": "Count to 3.", "input": "", "output": "1 2 3"}]
w("text.jsonl", TEXT)
w("pc.jsonl", PC)
w("alpaca.jsonl", ALPACA)
w("messages.jsonl", MESSAGES)
w("tokens.jsonl", TOKENS)
w("bad.jsonl", BAD)
w("fields.jsonl", FIELDS)
with open(os.path.join(out, "array.json"), "w") as f:
    json.dump(ARRAY, f)

TOKS = {  # folder: (bos id or None, eos id, end-of-turn text, template, trim answers)
    "qwen2.5-tokenizer": (None, 151645, "<|im_end|>", "qwen2.5-tokenizer", False),
    "llama-3.2-3b-instruct": (128000, 128009, "<|eot_id|>", "llama-3.2-3b-instruct", True),
    "llama2-tokenizer": (1, 2, None, None, False),
}
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[loopcontrols])
NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\n{}\n\n### Response:\n")
WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
              "further context. Write a response that appropriately completes the request.\n\n"
              "### Instruction:\n{}\n\n### Input:\n{}\n\n### Response:\n")


def pc(tk, bos, eos, prompt, completion):
    e = tk.encode(prompt + completion, add_special_tokens=False)
    ids = ([bos] if bos is not None else []) + e.ids + [eos]
    labels = ([-100] if bos is not None else []) + [
        i if end > len(prompt) else -100 for i, (_, end) in zip(e.ids, e.offsets)] + [eos]
    return ids, labels


def text_of(c):
    return c if isinstance(c, str) else "".join(p.get("text", p.get("value")) for p in c)


def messages(tk, cfg, m):
    bos, eos, eot, tdir, trim = cfg
    tmpl = json.load(open(os.path.join(shared, "models", tdir, "tokenizer_config.json")))[
        "chat_template"]
    if "conversations" in m:
        msgs = [{"role": {"human": "user", "gpt": "assistant"}[x["from"]], "content": x["value"]}
                for x in m["conversations"]]
        train = [x["role"] == "assistant" for x in msgs]
    else:
        msgs = [{"role": x["role"], "content": text_of(x["content"])} for x in m["messages"]]
        train = [x["role"] == "assistant" and x.get("loss_weight", 1.0) > 0
                 for x in m["messages"]]
    text = env.from_string(tmpl).render(messages=msgs, add_generation_prompt=False,
                                        bos_token="<|begin_of_text|>", date_string="26 Jul 2024")
    spans, cur = [], 0
    for x, t in zip(msgs, train):
        if x["role"] != "assistant":
            continue
        ans = (x["content"].strip() if trim else x["content"]) + eot
        pos = text.index(ans, cur)
        cur = pos + len(ans)
        if t:
            spans.append((pos, cur))
    e = tk.encode(text, add_special_tokens=False)
    labels = [i if any(s < b and a < t for s, t in spans) else -100
              for i, (a, b) in zip(e.ids, e.offsets)]
    return e.ids, labels


cases = []
for tdir, cfg in TOKS.items():
    tk = Tokenizer.from_file(os.path.join(shared, "models", tdir, "tokenizer.json"))
    bos, eos = cfg[0], cfg[1]
    files = {"text.jsonl": [pc(tk, bos, eos, "", r["text"]) for r in TEXT],
             "pc.jsonl": [pc(tk, bos, eos, r["prompt"], r["completion"]) for r in PC],
             "alpaca.jsonl": [pc(tk, bos, eos, (WITH_INPUT.format(r["instruction"], r["input"])
                                                if r["input"] else NO_INPUT.format(
                                                    r["instruction"])), r["output"])
                              for r in ALPACA],
             "tokens.jsonl": [(r["input_ids"], r.get("labels", r["input_ids"])) for r in TOKENS],
             "fields.jsonl": [pc(tk, bos, eos, r["question"], r["answer"]) for r in FIELDS]}
    if cfg[3]:
        files["messages.jsonl"] = [messages(tk, cfg, m) for m in MESSAGES]
    for name, exs in files.items():
        cases.append({"tokenizer": "models/" + tdir, "file": name,
                      "fields": "prompt=question,completion=answer" if name == "fields.jsonl"
                      else None,
                      "examples": [{"ids": i, "labels": l} for i, l in exs]})
json.dump({"generator": "tokenizers + jinja2 " + jinja2.__version__, "cases": cases},
          open(os.path.join(out, "expected.json"), "w"))
print(len(cases), "cases")
