"""gen_chat.py — chat-template fixtures: the models' Jinja templates rendered with jinja2 the way
transformers' apply_chat_template renders them (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, raise_exception, tojson).

Run by hand (pip install jinja2; used: jinja2 3.1.x):
    python3 tests/gen/gen_chat.py ../shared tests/data/tok/chat.json
Templates: Qwen2.5-Instruct, Llama-3.2-Instruct (date_string "26 Jul 2024") and
Mistral-7B-Instruct-v0.2 from their tokenizer_config.json under ../shared/models; Llama-2-chat,
Llama-3(.0)-Instruct, SmolLM2-Instruct and the generic ChatML template quoted below from the
Hugging Face model repositories; the Alpaca chat template is this project's (LLaMA-Factory's
alpaca layout). "templates" holds each template with its BOS/EOS so the tests can also check
that the format is recognised from the template text."""
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

shared, out = sys.argv[1], sys.argv[2]

LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}"
          "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
          "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
          "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
          "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "
          "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
          "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + "
          "'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
          "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
          "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = "
          "bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt "
          "%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
           "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
           "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\n' }}{% endif %}")
ALPACA = ("{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}"
          "{% set loop_messages = messages[1:] %}{% else %}{{ 'Below is an instruction that "
          "describes a task. Write a response that appropriately completes the request.\\n\\n' }}"
          "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
          "{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + "
          "'\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + "
          "message['content'] + eos_token + '\\n\\n' }}{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}")


def cfg_template(rel):
    return json.load(open(os.path.join(shared, "models", rel, "tokenizer_config.json")))[
        "chat_template"]


FORMATS = {  # name: (tokenizer folder, template, bos, eos)
    "qwen2.5": ("qwen2.5-tokenizer", cfg_template("qwen2.5-tokenizer"), "", "<|im_end|>"),
    "chatml": ("qwen2.5-tokenizer", CHATML, "", "<|im_end|>"),
    "llama3": ("llama-3.2-3b-instruct", LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
    "llama3.1": ("llama-3.2-3b-instruct", cfg_template("llama-3.2-3b-instruct"),
                 "<|begin_of_text|>", "<|eot_id|>"),
    "llama2": ("llama2-tokenizer", LLAMA2, "<s>", "</s>"),
    "mistral": ("mistral-7b-instruct-v0.2", cfg_template("mistral-7b-instruct-v0.2"), "<s>",
                "</s>"),
    "alpaca": ("llama2-tokenizer", ALPACA, "<s>", "</s>"),
    # HuggingFaceTB/SmolLM2-*-Instruct's template (newlines written as \n here); no named
    # format: lorakit must recognise it as ChatML with this default system prompt
    "smollm2": ("qwen2.5-tokenizer", SMOLLM2, "", "<|im_end|>"),
}

S = {"role": "system", "content": "You are a terse assistant."}
U1 = {"role": "user", "content": "What is 2+2?"}
A1 = {"role": "assistant", "content": "4"}
U2 = {"role": "user", "content": "  And 3+3?\n"}
A2 = {"role": "assistant", "content": " 6, of course. \n\n"}
U3 = {"role": "user", "content": "Übersetze: 猫 🐱\tand\n\nnewlines"}
CONVS = [[U1], [S, U1], [U1, A1], [U1, A1, U2], [S, U1, A1, U2, A2], [U3, A2],
         [{"role": "system", "content": "  padded system  "}, U2, A1]]


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[loopcontrols])
env.filters["tojson"] = lambda x, indent=None: json.dumps(x, indent=indent, ensure_ascii=False)
env.globals["raise_exception"] = raise_exception
cases = []
for name, (tok, tmpl, bos, eos) in FORMATS.items():
    t = env.from_string(tmpl)
    for conv in CONVS:
        for gen in (False, True):
            case = {"tokenizer": "models/" + tok, "format": name, "add_generation_prompt": gen,
                    "messages": conv}
            try:
                case["text"] = t.render(messages=conv, add_generation_prompt=gen, bos_token=bos,
                                        eos_token=eos, date_string="26 Jul 2024")
            except jinja2.exceptions.TemplateError as e:
                case["error"] = str(e)
            cases.append(case)
templates = {name: {"template": tmpl, "bos_token": bos or None, "eos_token": eos}
             for name, (_, tmpl, bos, eos) in FORMATS.items()}
json.dump({"generator": "jinja2 " + jinja2.__version__, "templates": templates, "cases": cases},
          open(out, "w"), ensure_ascii=False, indent=0)
print(len(cases), "cases")
