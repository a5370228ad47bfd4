#!/usr/bin/env python3
"""Writes samples/data/whale-{train,test}.jsonl: short prompt/completion stories in one fixed
style (a blue whale named Bob, a fixed sentence rhythm, a closing moral), the kind of narrow style
an SFT adapter picks up quickly. Deterministic (seed 0); the committed files are its output.
    python3 samples/make_style_data.py
"""
import json
import os
import random

FRIENDS = ["a little crab", "a shy turtle", "a silver fish", "an old octopus", "a happy seal",
           "a tiny shrimp", "a big dolphin", "a yellow starfish"]
THINGS = ["a shiny shell", "a lost boat", "a red ball", "a golden key", "a soft sponge",
          "a green bottle", "a bright pearl", "a broken net"]
PLACES = ["near the rocks", "under the waves", "by the coral", "in the deep water",
          "close to the beach", "behind the big stone"]
FEELINGS = ["happy", "proud", "calm", "glad", "warm inside"]
MORALS = ["Being kind is the best thing to do.", "Friends help each other.",
          "Sharing makes everyone happy.", "It is good to be brave and kind."]


def story(r):
    f, t, p, e, m = (r.choice(FRIENDS), r.choice(THINGS), r.choice(PLACES), r.choice(FEELINGS),
                     r.choice(MORALS))
    prompt = f"Tell me a story about Bob the blue whale and {f}."
    completion = (f" Bob the blue whale swam {p}. Bob met {f}. {f[0].upper() + f[1:]} had lost "
                  f"{t}. Bob said, \"I will help you!\" Bob looked and looked. Bob found {t} "
                  f"{r.choice(PLACES)}. {f[0].upper() + f[1:]} was so happy. Bob felt {e}. "
                  f"The end. {m}")
    return {"prompt": prompt, "completion": completion}


def main():
    r = random.Random(0)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    os.makedirs(here, exist_ok=True)
    for name, n in (("whale-train.jsonl", 400), ("whale-test.jsonl", 40)):
        with open(os.path.join(here, name), "w") as f:
            for _ in range(n):
                f.write(json.dumps(story(r)) + "\n")


if __name__ == "__main__":
    main()
