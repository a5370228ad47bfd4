#!/usr/bin/env python3
"""gen_chat_tools.py — tool-calling conversations and the ids/labels transformers gives them.

Fixtures (tests/data/tok/ds/): tools.jsonl (six records of LLaMA-Factory's glaive function-call
demo, ShareGPT with function_call/observation turns and a "tools" JSON string; one OpenAI-style
record with a system message, a tools list of {"type": "function", ...} schemas, an assistant turn
with text and one call whose arguments are a JSON string, and a "tool" result) and
tools-parallel.jsonl (an OpenAI-style turn with two calls and two results: Qwen2.5 only, Llama-3.1
allows one call per turn). tools-expected.json holds, per tokenizer and file, every example's ids
and labels built independently of lorakit:

  * each record becomes the messages transformers' apply_chat_template takes: ShareGPT human/gpt
    → user/assistant, function_call → an assistant turn with content "" and
    tool_calls=[{"type": "function", "function": json.loads(value)}], observation → role "tool";
    OpenAI tool_calls as given with their arguments json.loads'ed (the templates expect a dict);
    tools = json.loads(tools) (an empty list or "" → no tools);
  * text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
    date_string="26 Jul 2024") with the model's own Jinja template
    (../shared/models/qwen2.5-tokenizer, ../shared/models/llama-3.2-3b-instruct, whose template is
    Llama-3.1's tool format);
  * the loss spans: for every assistant turn i, from the end of the rendering of messages[:i]
    with add_generation_prompt=True (checked to be a prefix of the whole text) to the end of the
    rendering of messages[:i+1] (without ChatML's newline after <|im_end|>);
  * ids from tokenizer(text, add_special_tokens=False); a token is trained (label = id) when its
    character offsets overlap a span, else -100.

Run by hand with the peer venv (transformers 4.46.3, tokenizers 0.20.3):
    /root/peers/venv/bin/python tests/gen/gen_chat_tools.py ../shared tests/data/tok/ds
"""
import json
import os
import sys

import transformers
from transformers import AutoTokenizer

shared, out = sys.argv[1], sys.argv[2]
GLAIVE = os.path.join(shared, "data", "llamafactory-demo", "glaive_toolcall_en_demo.json")
PICK = [203, 202, 290, 246, 238, 123]  # short calls, a float argument, tools without a call,
                                       # non-ASCII text, no tools at all
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"]}}}
OPENAI_ONE = {"messages": [
    {"role": "system", "content": "You are a terse weather bot."},
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather",
                                          "arguments": "{\"city\": \"Zürich\", \"unit\": \"c\"}"}}]},
    {"role": "tool", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
    {"role": "assistant", "content": "21.5 °C and clear."}], "tools": [WEATHER]}
OPENAI_TWO = {"messages": [
    {"role": "user", "content": "Compare Oslo and Rome."},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
    {"role": "tool", "content": "{\"temp\": 4}"},
    {"role": "tool", "content": "{\"temp\": 19}"},
    {"role": "assistant", "content": "Rome is 15 degrees warmer."}], "tools": [WEATHER]}


def to_messages(rec):
    """A record as apply_chat_template's messages and tools (the convention lorakit follows)."""
    if "conversations" in rec:
        msgs = []
        for m in rec["conversations"]:
            r, v = m["from"], m["value"]
            if r == "function_call":
                msgs.append({"role": "assistant", "content": "",
                             "tool_calls": [{"type": "function", "function": json.loads(v)}]})
            else:
                msgs.append({"role": {"human": "user", "gpt": "assistant", "observation": "tool",
                                      "system": "system"}[r], "content": v})
        tools = json.loads(rec["tools"]) if rec.get("tools") else None
    else:
        msgs = []
        for m in rec["messages"]:
            m = dict(m)
            if "tool_calls" in m:
                calls = []
                for c in m["tool_calls"]:
                    f = dict(c["function"])
                    if isinstance(f["arguments"], str):
                        f["arguments"] = json.loads(f["arguments"])
                    calls.append({"type": "function", "function": f})
                m["tool_calls"] = calls
            msgs.append(m)
        tools = rec.get("tools")
    return msgs, (tools or None)


def render(tok, msgs, tools, gen):
    return tok.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=gen,
                                   date_string="26 Jul 2024")


def example(tok, rec, chatml):
    msgs, tools = to_messages(rec)
    text = render(tok, msgs, tools, False)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant" or i == 0:
            continue
        pre = render(tok, msgs[:i], tools, True)
        upto = render(tok, msgs[:i + 1], tools, False)
        assert text.startswith(pre) and text.startswith(upto), (i, pre[-80:], upto[-80:])
        end = len(upto) - 1 if chatml else len(upto)  # ChatML's "\n" after <|im_end|> is not
        spans.append((len(pre), end))                # the answer's
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [i if any(a < e and b > s for s, e in spans) else -100
              for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])]
    return {"ids": enc["input_ids"], "labels": labels}


def main():
    glaive = json.load(open(GLAIVE))
    files = {"tools.jsonl": [glaive[i] for i in PICK] + [OPENAI_ONE],
             "tools-parallel.jsonl": [OPENAI_TWO]}
    for name, recs in files.items():
        with open(os.path.join(out, name), "w") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    cases = []
    for tdir, chatml, names in [("qwen2.5-tokenizer", True, ["tools.jsonl", "tools-parallel.jsonl"]),
                                ("llama-3.2-3b-instruct", False, ["tools.jsonl"])]:
        tok = AutoTokenizer.from_pretrained(os.path.join(shared, "models", tdir))
        for name in names:
            cases.append({"tokenizer": "models/" + tdir, "file": name,
                          "examples": [example(tok, r, chatml) for r in files[name]]})
    json.dump({"generator": "transformers " + transformers.__version__ + " apply_chat_template",
               "cases": cases}, open(os.path.join(out, "tools-expected.json"), "w"))
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
