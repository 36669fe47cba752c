#!/usr/bin/env python3
"""The trainer's self-check, on the tiny LLaMA fixture (seconds on a CPU):

1. the training forward (teacher-forced) gives the same logits as scripts/focus_reference.py's
   cached-local decoding, with copied candidate projections and with a random low-rank adapter
   (which the reference merges into full matrices: a different computation of the same thing);
2. autograd's gradient of the loss equals a finite difference (float64);
3. the exported adapter file loads back equal, with the engine's tensor names and shapes;
4. a few optimiser steps on one repetition example lower its loss (the adapter can learn);
5. the bf16 base (what a GPU run uses) gives nearly the f32 loss, and its gradients reach the adapter.

Usage: python3 training/selfcheck.py
"""
import os
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import focus_reference as ref_mod  # noqa: E402
from focus_model import Base, CandidateAdapter, focus_logits, focus_loss  # noqa: E402
from tasks import make_example  # noqa: E402

torch.set_grad_enabled(True)  # the reference module turns gradients off when imported


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        sys.exit(1)


def main():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    d = os.path.join(ROOT, "tests", "fixtures", "tiny-llama")
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    base = Base(hf)
    vocab = hf.config.vocab_size
    bos = hf.config.bos_token_id
    L, S, Q, n, steps = 16, 12, 6, 3, 5
    g = torch.Generator().manual_seed(3)
    ids = [bos] + torch.randint(3, vocab, (n * S + L - 1,), generator=g).tolist()

    adapter = CandidateAdapter(base, rank=4)
    with torch.no_grad():
        for key in adapter.b:
            adapter.b[key].normal_(0, 0.05)
    merged = {}
    for i, layer in enumerate(base.layers):
        for p in ("q", "k", "v", "o"):
            name = f"model.layers.{i}.self_attn.beacon_{p}_proj.weight"
            merged[name] = layer[p][0] + adapter.b[f"{i}_{p}"].detach() @ adapter.a[f"{i}_{p}"].detach()

    # 1. Against the reference's cached-local decoding.
    for label, ad, beacon in [("copied", None, None), ("adapter", adapter, merged)]:
        reference = ref_mod.Reference(hf, beacon)
        gen, want = ref_mod.run_mode(reference, ids, L, S, Q, [bos], "candidates_first", "cached_local", steps)
        ex = make_example(ids[:n * S], ids[n * S:], gen, S, Q, [bos], "check")
        with torch.no_grad():
            got = focus_logits(base, ad, ex["chunks"], ex["query"], ex["local"], ex["answer"])
        diff = float((got - want[:steps]).abs().max())
        check(f"training forward = reference cached-local decoding ({label})", diff < 1e-4, f"max |diff| {diff:.2e}")
        with torch.no_grad():
            got_ckpt = focus_logits(base, ad, ex["chunks"], ex["query"], ex["local"], ex["answer"], grad_checkpoint=True)
        check(f"gradient checkpointing changes nothing ({label})", torch.equal(got, got_ckpt))

    # 2. Gradient against a finite difference, in float64.
    base64 = Base(hf, dtype=torch.float64)
    ad64 = CandidateAdapter(base64, rank=4).double()
    with torch.no_grad():
        for key in ad64.b:
            ad64.b[key].normal_(0, 0.05)
    ex = make_example(ids[:n * S], ids[n * S:], ids[5:10], S, Q, [bos], "check")
    loss = focus_loss(base64, ad64, ex)
    loss.backward()
    for key in ["0_q", "0_o", "1_k", "1_v"]:
        param = ad64.b[key]
        grad = float(param.grad[1, 2])
        eps = 1e-6
        with torch.no_grad():
            param[1, 2] += eps
            up = float(focus_loss(base64, ad64, ex))
            param[1, 2] -= 2 * eps
            down = float(focus_loss(base64, ad64, ex))
            param[1, 2] += eps
        fd = (up - down) / (2 * eps)
        check(f"gradient of lora_b[{key}] = finite difference", abs(grad - fd) < 1e-6 + 1e-4 * abs(fd),
              f"autograd {grad:.6e} fd {fd:.6e}")

    # 3. The exported file.
    tensors = adapter.tensors()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "adapter.safetensors")
        save_file(tensors, path)
        back = load_file(path)
    layers = hf.config.num_hidden_layers
    check("adapter file has lora_a/lora_b for q, k, v, o of every layer", len(back) == layers * 8, f"{len(back)} tensors")
    a = back["model.layers.0.self_attn.beacon_k_proj.lora_a"]
    b = back["model.layers.0.self_attn.beacon_k_proj.lora_b"]
    check("lora_a is [rank, in], lora_b is [out, rank]",
          tuple(a.shape) == (4, hf.config.hidden_size) and tuple(b.shape) == (base.dims("k")[0], 4))
    fresh = CandidateAdapter(base, rank=4)
    fresh.load_tensors(back)
    check("the file loads back equal", all(torch.equal(fresh.b[k], adapter.b[k]) for k in adapter.b))

    # 4. Learning: a repetition example (the answer is a span of the memory).
    lead, A = 4, 8
    span_at = 5
    local = ids[n * S:][: L - lead] + ids[span_at:span_at + lead]
    answer = ids[span_at + lead:span_at + lead + A]
    ex = make_example(ids[:n * S], local, answer, S, Q, [bos], "repetition")
    learner = CandidateAdapter(base, rank=4)
    opt = torch.optim.AdamW(learner.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = focus_loss(base, learner, ex)
        first = float(loss) if first is None else first
        loss.backward()
        opt.step()
    last = float(focus_loss(base, learner, ex))
    check("30 steps on one repetition example lower its loss", last < 0.8 * first, f"{first:.3f} -> {last:.3f}")

    # 5. The bf16 path (GPU runs), here on the CPU.
    base16 = Base(hf, dtype=torch.bfloat16)
    learner.zero_grad(set_to_none=True)
    loss16 = focus_loss(base16, learner, ex)
    loss16.backward()
    grads = [p.grad for p in learner.parameters() if p.grad is not None]
    rel = abs(float(loss16) - last) / last
    check("bf16 base: loss within 5% of f32", rel < 0.05, f"{float(loss16):.3f} vs {last:.3f}")
    check("bf16 base: float32 gradients reach the adapter", bool(grads) and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads))
    print("selfcheck passed")


if __name__ == "__main__":
    main()
