#!/usr/bin/env python3
"""Held-out language-model loss with and without a trained adapter, at lengths past the window.

On text the trainer never saw (tasks.py's held-out split), for each total length N: the memory is
the first tokens (whole chunks), then the local window, then an answer span of --answer tokens whose
mean cross-entropy is reported, under four readers:

  local only      the local window alone (no memory at all)
  plain           ordinary causal attention over all N tokens (past 8192, beyond the model's window)
  focus copied    FocusLLM with copied (untrained) candidate projections
  focus adapter   FocusLLM with the adapter's candidate projections

Two answer spans per window: `continuation` (the text that follows; ordinary language modelling)
and `repetition` (a span from inside the memory, after a 16-token lead in the local window; only
the memory can give it). FocusLLM here decodes cached-local, teacher-forced (focus_model.py).

Usage: python3 training/evaluate.py --adapter runs/FILE [--lengths 4096,16384] [--samples 3]
"""
import argparse
import os
import random
import sys
import time

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from focus_model import CandidateAdapter, chunk_inputs, focus_logits, load_base, ordinary_stream, plain_logits  # noqa: E402
from tasks import make_example, token_streams  # noqa: E402
from train import default_data, default_model, ints, prefix_of  # noqa: E402

torch.set_grad_enabled(False)


def ce(logits, answer):
    return float(torch.nn.functional.cross_entropy(logits, torch.tensor(answer)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--lengths", type=ints, default=[4096, 16384])
    ap.add_argument("--samples", type=int, default=3, help="windows per length (alternating the two sources)")
    ap.add_argument("--local", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--query", type=int, default=256)
    ap.add_argument("--answer", type=int, default=128)
    ap.add_argument("--plain-max", type=int, default=16384, help="skip plain attention above this length")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    model_path = args.model or default_model()
    data_dir = args.data or default_data()
    hf, tok, base = load_base(model_path)
    del hf
    streams = token_streams(tok, data_dir, os.path.join(data_dir, "tokens-" + os.path.basename(model_path) + ".pt"))["heldout"]
    adapter = CandidateAdapter(base, rank=load_file(args.adapter)["model.layers.0.self_attn.beacon_q_proj.lora_a"].shape[0])
    adapter.load_tensors(load_file(args.adapter))
    prefix = prefix_of(tok)
    rng = random.Random(args.seed)
    L, S, Q, A, lead = args.local, args.chunk, args.query, args.answer, 16
    readers = ["local only", "plain", "focus copied", "focus adapter"]
    print(f"held-out loss (nats/token) over {A}-token answers; L={L} S={S} Q={Q}; adapter {args.adapter}")
    print("| tokens | answer | samples | " + " | ".join(readers) + " |")
    print("|---|---|---|" + "---|" * len(readers))
    for N in args.lengths:
        M = (N - L - A) // S * S
        sums = {task: {r: [] for r in readers} for task in ("continuation", "repetition")}
        for k in range(args.samples):
            stream = streams[k % len(streams)]
            start = rng.randrange(0, len(stream) - (M + L + A))
            w = stream[start:start + M + L + A].tolist()
            memory, after = w[:M], w[M:]
            j = rng.randrange(0, M - lead - A)
            span = memory[j:j + lead + A]
            cases = {"continuation": (after[:L], after[L:L + A]),
                     "repetition": (after[:L - lead] + span[:lead], span[lead:])}
            for task, (local, answer) in cases.items():
                t0 = time.time()
                ex = make_example(memory, local, answer, S, Q, prefix, task)
                kept = ordinary_stream(base, chunk_inputs(base, ex["chunks"], ex["query"], ex["answer"]))
                row = sums[task]
                row["focus copied"].append(ce(focus_logits(base, None, ex["chunks"], ex["query"], ex["local"], answer, kept=kept), answer))
                row["focus adapter"].append(ce(focus_logits(base, adapter, ex["chunks"], ex["query"], ex["local"], answer, kept=kept), answer))
                del kept
                row["local only"].append(ce(focus_logits(base, None, None, ex["query"], ex["local"], answer), answer))
                if N <= args.plain_max:
                    full = prefix + memory + local + answer[:-1]
                    row["plain"].append(ce(plain_logits(base, full, A), answer))
                print(f"  N={N} sample {k} {task}: " + ", ".join(f"{r} {v[-1]:.3f}" for r, v in row.items() if v)
                      + f" ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        for task, row in sums.items():
            cells = [f"{sum(v) / len(v):.3f}" if v else "-" for v in row.values()]
            print(f"| {N} | {task} | {args.samples} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
