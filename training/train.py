#!/usr/bin/env python3
"""Train FocusLLM's candidate projections (low-rank, over the frozen base) and export an adapter
file that the Rust engine loads (`Llm::load_adapter`, `--adapter`).

Each step draws one example (continuation, repetition or retrieval; see tasks.py) with its chunk
size, local window and number of chunks drawn from the configured sets, and minimises the answer's
cross-entropy (focus_model.py). The checkpoint in --out is resumed when present.

Usage:
  python3 training/train.py --out runs/smollm2 --steps 400            # CPU, reduced scale
  python3 training/train.py --out runs/smollm2 --device cuda --steps 4000 \\
      --chunk-sizes 256,512,1024,2048 --local-sizes 1024,2048 --max-memory-tokens 12000
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, HERE)

from focus_model import CandidateAdapter, focus_loss, load_base  # noqa: E402
from tasks import Sampler, token_streams  # noqa: E402


def ints(s):
    return [int(x) for x in s.split(",")]


def task_weights(s):
    out = {}
    for part in s.split(","):
        k, v = part.split("=")
        out[k] = float(v)
    return out


def default_model():
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch_model.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()


def default_data():
    return subprocess.run(["bash", os.path.join(HERE, "fetch_data.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()


def prefix_of(tok):
    """The token the tokenizer itself puts in front of a text (BOS), or nothing."""
    ids = tok("a")["input_ids"]
    return [ids[0]] if tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id else []


def export(adapter, path, meta, dtype=torch.float32):
    """Writes the adapter file (lora_a/lora_b per projection) in `dtype`, with `meta` as metadata."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tensors = {k: v.to(dtype).contiguous() for k, v in adapter.tensors().items()}
    save_file(tensors, path, metadata={k: str(v) for k, v in meta.items()})


def meta_of(args, model_path):
    """What the adapter file records about its training."""
    return {"base_model": os.path.basename(model_path), "rank": args.rank, "chunk_sizes": args.chunk_sizes,
            "local_sizes": args.local_sizes, "query_max": args.query_max, "answer_len": args.answer_len,
            "tasks": args.tasks, "lr": args.lr, "trainer": "training/train.py"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF file (default: the project's default model, fetched if missing)")
    ap.add_argument("--data", help="directory from fetch_data.sh (default: fetched if missing)")
    ap.add_argument("--out", required=True, help="run directory: checkpoint, log, adapter.safetensors")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--chunk-sizes", type=ints, default=[128, 256, 512])
    ap.add_argument("--local-sizes", type=ints, default=[256, 384, 512])
    ap.add_argument("--query-max", type=int, default=256, help="query = last min(this, S, L) local tokens")
    ap.add_argument("--answer-len", type=int, default=48)
    ap.add_argument("--max-memory-tokens", type=int, default=1800,
                    help="bound on the chunk forwards' tokens per step (n * (S + Q + answer))")
    ap.add_argument("--min-chunks", type=int, default=2)
    ap.add_argument("--tasks", type=task_weights, default=task_weights("continuation=0.4,repetition=0.35,retrieval=0.25"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--grad-checkpoint", choices=["on", "off"], default="on",
                    help="recompute each layer in the backward pass (less memory, about 30%% more time)")
    ap.add_argument("--save-every", type=int, default=20)
    ap.add_argument("--export-only", metavar="FILE",
                    help="write the run's adapter to FILE in float16 (the shipped form) and exit")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model_path = args.model or default_model()
    data_dir = args.data or default_data()
    os.makedirs(args.out, exist_ok=True)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    hf, tok, base = load_base(model_path, dtype=dtype, device=args.device)
    del hf
    streams = token_streams(tok, data_dir, os.path.join(data_dir, "tokens-" + os.path.basename(model_path) + ".pt"))
    print("training tokens:", sum(len(s) for s in streams["train"]), "held out:",
          sum(len(s) for s in streams["heldout"]), flush=True)
    sampler = Sampler(tok, streams["train"], args.chunk_sizes, args.local_sizes, args.query_max, args.answer_len,
                      args.max_memory_tokens, args.min_chunks, args.tasks, prefix_of(tok), args.seed)
    adapter = CandidateAdapter(base, args.rank).float()
    opt = torch.optim.AdamW(adapter.parameters(), lr=args.lr, weight_decay=0.0)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    step = 0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, weights_only=False)
        adapter.load_state_dict(ck["adapter"])
        opt.load_state_dict(ck["optimizer"])
        sampler.rng.setstate(ck["sampler_rng"])
        torch.set_rng_state(ck["torch_rng"])
        step = ck["step"]
        print(f"resumed at step {step}", flush=True)
    if args.export_only:
        export(adapter, args.export_only, dict(meta_of(args, model_path), steps=step), torch.float16)
        print("wrote", args.export_only)
        return

    def lr_at(s):
        if s < args.warmup:
            return args.lr * (s + 1) / args.warmup
        t = (s - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    meta = meta_of(args, model_path)
    log = open(os.path.join(args.out, "log.jsonl"), "a")
    recent = {}
    t0, tokens = time.time(), 0
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        ex = sampler.sample()
        opt.zero_grad(set_to_none=True)
        # The base runs in its own dtype (bf16 on a GPU); the adapter's parameters stay float32.
        loss = focus_loss(base, adapter, ex, grad_checkpoint=args.grad_checkpoint == "on")
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += ex["tokens"]
        value = float(loss.detach())
        recent.setdefault(ex["kind"], []).append(value)
        log.write(json.dumps({"step": step, "kind": ex["kind"], "loss": value, "chunks": 0 if ex["chunks"] is None else
                              ex["chunks"].shape[0], "tokens": ex["tokens"], "grad_norm": float(norm),
                              "time": time.time()}) + "\n")
        log.flush()
        rate = tokens / (time.time() - t0)
        means = " ".join(f"{k} {sum(v[-20:]) / len(v[-20:]):.3f}" for k, v in sorted(recent.items()))
        print(f"step {step}/{args.steps} loss {value:.3f} ({ex['kind']}) | mean of last 20: {means} | "
              f"{rate:.0f} tok/s | lr {lr_at(step - 1):.2e}", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            torch.save({"adapter": adapter.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "sampler_rng": sampler.rng.getstate(), "torch_rng": torch.get_rng_state()}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
            export(adapter, os.path.join(args.out, "adapter.safetensors"), dict(meta, steps=step))
    print("adapter:", os.path.join(args.out, "adapter.safetensors"))


if __name__ == "__main__":
    main()
