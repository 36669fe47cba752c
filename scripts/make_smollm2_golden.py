#!/usr/bin/env python3
"""Golden data for the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from Hugging Face transformers.

transformers loads the same GGUF file (`gguf_file=`), dequantises it to float32 and undoes
llama.cpp's q/k permutation; its tokenizer is built from the same `tokenizer.ggml.*` metadata and
its chat template is the file's `tokenizer.chat_template`. For each prompt we record:

  - `text`:   the prompt (for the chat prompt, transformers' `apply_chat_template` rendering of
              `messages` with add_generation_prompt=True),
  - `ids`:    transformers' tokenizer encoding of `text` (add_special_tokens=True),
  - logits:   float32 logits at the last position of one full forward (tensor `logits.<name>` in
              golden.safetensors),
  - `greedy`: the next 20 tokens by arg-max, each from a fresh full forward over the whole prefix
              (no KV cache, and not stopping at EOS), so the reference shares nothing with the
              incremental path it checks.

Output: tests/fixtures/smollm2/golden.json and golden.safetensors.

Usage: python3 scripts/make_smollm2_golden.py [--model PATH] [--out tests/fixtures/smollm2]
       (PATH defaults to the file scripts/fetch_model.sh prints.)
Needs: torch, transformers (5.x), gguf, safetensors.
"""
import argparse
import json
import os
import subprocess

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

GREEDY_STEPS = 20

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


def prompts(tokenizer):
    messages = [
        {"role": "user", "content": "What is the capital of France? Answer in one short sentence."},
    ]
    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # ~2000 tokens: filler with a pass key in the middle, then the question.
    half = FILLER * 45
    long = (
        "There is important info hidden inside a lot of irrelevant text. Find it and memorize it.\n"
        + half
        + "The pass key is 68213. Remember it. 68213 is the pass key. "
        + half
        + "What is the pass key? The pass key is"
    )
    return [
        {"name": "plain", "text": "The capital of France is"},
        {"name": "chat", "text": chat, "messages": messages},
        {"name": "long", "text": long},
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "smollm2"))
    args = parser.parse_args()
    model_path = args.model or subprocess.check_output(
        ["bash", os.path.join(os.path.dirname(__file__), "fetch_model.sh")], text=True
    ).strip().splitlines()[-1]
    directory, name = os.path.split(os.path.abspath(model_path))

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()

    cases = []
    tensors = {}
    for prompt in prompts(tokenizer):
        ids = tokenizer(prompt["text"], add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1].float()
            tensors[f"logits.{prompt['name']}"] = logits.contiguous()
            seq = list(ids)
            greedy = []
            next_logits = logits
            for _ in range(GREEDY_STEPS):
                token = int(torch.argmax(next_logits))
                greedy.append(token)
                seq.append(token)
                next_logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
        case = dict(prompt, ids=ids, greedy=greedy, decoded=tokenizer.decode(greedy))
        print(f"{prompt['name']}: {len(ids)} tokens -> {case['decoded']!r}")
        cases.append(case)

    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "golden.safetensors"))
    meta = {
        "model": name,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "greedy_steps": GREEDY_STEPS,
        "cases": cases,
    }
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
