#!/usr/bin/env python3
"""An independent PyTorch reference of FocusLLM as docs/algorithm.md describes it, over the weights
that Hugging Face transformers loads, writing golden files for the Rust engine's tests.

The transformer forward here is this script's own code (pre-RoPE key/value caches, fresh positions
0..len-1 for past ++ new in every forward, candidate projections on chosen rows); before use it is
checked against transformers' own forward on the same weights.

Usage:
  python3 scripts/focus_reference.py tiny            # tests/fixtures/focus/tiny-llama.{json,safetensors}
  python3 scripts/focus_reference.py tiny-lora       # tests/fixtures/focus/tiny-llama-lora.{json,safetensors}
  python3 scripts/focus_reference.py smollm2 GGUF    # tests/fixtures/focus/smollm2.{json,safetensors}
  python3 scripts/focus_reference.py smollm2 GGUF ADAPTER   # .../smollm2-adapter.{json,safetensors}

A low-rank adapter (`beacon_*_proj.lora_a` [r, in], `.lora_b` [out, r], as training/train.py exports
it) is merged here into full matrices W + lora_b @ lora_a; the engine applies it unmerged.

Each golden holds, per decode mode, the logits of the last input position after prefill followed by
the logits after each of `steps` greedy tokens (teacher-forced on the greedy choices), and the tokens.
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

torch.set_grad_enabled(False)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "focus")


# ----------------------------------------------------------------------------------------------
# The transformer, written here over transformers' parameters.
# ----------------------------------------------------------------------------------------------
class Reference:
    def __init__(self, hf_model, beacon=None):
        m = hf_model.model
        c = hf_model.config
        self.cfg = c
        self.embed = m.embed_tokens.weight.float()
        self.norm = m.norm.weight.float()
        self.lm_head = hf_model.lm_head.weight.float()
        self.eps = c.rms_norm_eps
        self.nh = c.num_attention_heads
        self.nkv = c.num_key_value_heads
        self.hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.inv_freq = m.rotary_emb.inv_freq.float()
        self.layers = []
        for i, layer in enumerate(m.layers):
            a, mlp = layer.self_attn, layer.mlp

            def lin(mod):
                return (mod.weight.float(), None if mod.bias is None else mod.bias.float())

            d = dict(
                in_norm=layer.input_layernorm.weight.float(),
                post_norm=layer.post_attention_layernorm.weight.float(),
                q=lin(a.q_proj), k=lin(a.k_proj), v=lin(a.v_proj), o=lin(a.o_proj),
                gate=lin(mlp.gate_proj), up=lin(mlp.up_proj), down=lin(mlp.down_proj),
            )
            # Candidate projections: the adapter's where given, else the ordinary ones (training-free).
            for name in ["q", "k", "v", "o", "up", "down"]:
                part = "mlp" if name in ("up", "down") else "self_attn"
                key = f"model.layers.{i}.{part}.beacon_{name}_proj"
                if beacon is not None and key + ".weight" in beacon:
                    d["beacon_" + name] = (beacon[key + ".weight"].float(), beacon.get(key + ".bias"))
                else:
                    d["beacon_" + name] = d[name]
            self.layers.append(d)

    def rmsnorm(self, x, w):
        var = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + self.eps))

    def rope(self, x, positions):
        # x [T, heads, D]; half-split rotation as transformers' rotate_half.
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    @staticmethod
    def proj(x, wb, cand_rows, cwb):
        w, b = wb
        y = x @ w.T
        if b is not None:
            y = y + b
        if cand_rows:
            cw, cb = cwb
            yc = x[cand_rows] @ cw.T
            if cb is not None:
                yc = yc + cb
            y = y.clone()
            y[cand_rows] = yc
        return y

    def forward(self, tokens, past=None, cand=0):
        """tokens: list of ids; past: per layer (K, V) pre-RoPE [P, kv, D] or None; the last `cand`
        tokens use the candidate projections. Returns (logits [T, V], new per-layer (K, V))."""
        T = len(tokens)
        P = 0 if past is None else past[0][0].shape[0]
        cand_rows = list(range(T - cand, T))
        h = self.embed[torch.tensor(tokens)]
        qpos = torch.arange(P, P + T)
        kpos = torch.arange(0, P + T)
        mask = kpos[None, :] <= qpos[:, None]
        new_past = []
        for i, L in enumerate(self.layers):
            x = self.rmsnorm(h, L["in_norm"])
            q = self.proj(x, L["q"], cand_rows, L["beacon_q"]).view(T, self.nh, self.hd)
            k = self.proj(x, L["k"], cand_rows, L["beacon_k"]).view(T, self.nkv, self.hd)
            v = self.proj(x, L["v"], cand_rows, L["beacon_v"]).view(T, self.nkv, self.hd)
            if past is not None:
                k = torch.cat([past[i][0], k], 0)
                v = torch.cat([past[i][1], v], 0)
            new_past.append((k, v))
            qr = self.rope(q, qpos)
            kr = self.rope(k, kpos)
            group = self.nh // self.nkv
            kr = kr.repeat_interleave(group, dim=1)
            vv = v.repeat_interleave(group, dim=1)
            scores = torch.einsum("thd,shd->hts", qr, kr) / math.sqrt(self.hd)
            scores = scores.masked_fill(~mask[None], float("-inf"))
            p = torch.softmax(scores, dim=-1)
            o = torch.einsum("hts,shd->thd", p, vv).reshape(T, self.nh * self.hd)
            h = h + self.proj(o, L["o"], cand_rows, L["beacon_o"])
            x = self.rmsnorm(h, L["post_norm"])
            gate = self.proj(x, L["gate"], [], None)
            up = self.proj(x, L["up"], cand_rows, L["beacon_up"])
            h = h + self.proj(torch.nn.functional.silu(gate) * up, L["down"], cand_rows, L["beacon_down"])
        logits = self.rmsnorm(h, self.norm) @ self.lm_head.T
        return logits, new_past


def merge_lora(hf_model, adapter):
    """Full candidate matrices from a low-rank adapter: beacon_x_proj = x_proj + lora_b @ lora_a."""
    beacon = {}
    for name, a in adapter.items():
        if not name.endswith(".lora_a"):
            continue
        stem = name[: -len(".lora_a")]
        layer, proj = stem.split(".self_attn.beacon_")
        ordinary = hf_model.get_parameter(f"{layer}.self_attn.{proj}.weight").float()
        beacon[stem + ".weight"] = ordinary + adapter[stem + ".lora_b"].float() @ a.float()
    return beacon


def concat_past(parts):
    return [(torch.cat([p[i][0] for p in parts], 0), torch.cat([p[i][1] for p in parts], 0)) for i in range(len(parts[0]))]


def split_last(past):
    return [(k[:-1], v[:-1]) for k, v in past], [(k[-1:], v[-1:]) for k, v in past]


def entropy(logits):
    logp = torch.log_softmax(logits.double(), -1)
    return float(-(logp.exp() * logp).sum())


# ----------------------------------------------------------------------------------------------
# FocusLLM (docs/algorithm.md).
# ----------------------------------------------------------------------------------------------
def plan(tokens, L, S, Q, prefix):
    n = len(tokens)
    memory = tokens[: n - L]
    chunks = [memory[i : i + S] for i in range(0, len(memory), S)]
    local = tokens[n - L :]
    tail = tokens[n - Q :]
    query = tail if tail[: len(prefix)] == prefix else prefix + tail
    if local[: len(prefix)] == prefix:
        local_tokens, hlen = list(local), 0
    else:
        local_tokens, hlen = prefix + local, len(prefix)
    return chunks, query, local_tokens, hlen


def local_forward(ref, cands, local_tokens, hlen, order):
    memory = concat_past(cands)
    if order == "sink_first" and hlen > 0:
        _, past = ref.forward(local_tokens[:hlen])
        past = concat_past([past, memory])
        logits, past = ref.forward(local_tokens[hlen:], past)
        return logits[-1], past, hlen
    logits, past = ref.forward(local_tokens, memory)
    return logits[-1], past, 0


def run_mode(ref, tokens, L, S, Q, prefix, order, mode, steps):
    chunks, query, local_tokens, hlen = plan(tokens, L, S, Q, prefix)
    out_logits = []
    if mode == "min_entropy":
        caches, dists = [], []
        for ch in chunks:
            logits, past = ref.forward(ch + query)
            caches.append(past)
            dists.append(logits[-1])
        logits, past = ref.forward(local_tokens)
        caches.append(past)
        dists.append(logits[-1])
        cur = min(dists, key=entropy)
        gen = []
        for _ in range(steps + 1):
            out_logits.append(cur)
            if len(gen) == steps:
                break
            t = int(cur.argmax())
            gen.append(t)
            dists = []
            for j, past in enumerate(caches):
                logits, caches[j] = ref.forward([t], past)
                dists.append(logits[-1])
            cur = min(dists, key=entropy)
        return gen, torch.stack(out_logits)

    cands, raw = [], []
    for ch in chunks:
        _, past = ref.forward(ch + query, cand=1)
        rest, cand = split_last(past)
        raw.append(rest)
        cands.append(cand)
    cur, local_past, at = local_forward(ref, cands, local_tokens, hlen, order)
    prev = tokens[-1]
    gen = []
    for _ in range(steps + 1):
        out_logits.append(cur)
        if len(gen) == steps:
            break
        t = int(cur.argmax())
        gen.append(t)
        if mode in ("exact", "cached_local"):
            fresh = []
            for j in range(len(raw)):
                _, past = ref.forward([prev, t], raw[j], cand=1)
                raw[j], cand = split_last(past)
                fresh.append(cand)
            cands = fresh
        prev = t
        if mode == "exact":
            local_tokens = local_tokens + [t]
            cur, _, _ = local_forward(ref, cands, local_tokens, hlen, order)
        else:
            if mode == "cached_local":
                memory = concat_past(cands)
                n = memory[0][0].shape[0]
                local_past = [
                    (torch.cat([k[:at], mk, k[at + n :]]), torch.cat([v[:at], mv, v[at + n :]]))
                    for (k, v), (mk, mv) in zip(local_past, memory)
                ]
            logits, local_past = ref.forward([t], local_past)
            cur = logits[-1]
    return gen, torch.stack(out_logits)


def check_against_transformers(ref, hf_model, ids, tol):
    mine, _ = ref.forward(ids)
    theirs = hf_model(torch.tensor([ids])).logits[0].float()
    d = float((mine - theirs).abs().max())
    print(f"reference forward vs transformers on {len(ids)} tokens: max |diff| {d:.2e}")
    assert d < tol, d
    # Incremental decoding through the pre-RoPE cache equals the full forward.
    half = len(ids) // 2
    _, past = ref.forward(ids[:half])
    step, _ = ref.forward(ids[half:], past)
    d = float((step - mine[half:]).abs().max())
    assert d < tol, d


def write(name, meta, tensors):
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, os.path.join(OUT, name + ".safetensors"))
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote", os.path.join(OUT, name + ".{json,safetensors}"))


def tiny():
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    d = os.path.join(ROOT, "tests", "fixtures", "tiny-llama")
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    text = " ".join([
        "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.",
        "The pass key is 71432. Remember it. 71432 is the pass key.",
        "The grass is green. The sky is blue. What is the pass key? The pass key is",
    ])
    ids = tok.encode(text).ids
    # An adapter of candidate projections that differ from the ordinary ones (seeded), so the
    # goldens show the candidate rows really use them.
    g = torch.Generator().manual_seed(11)
    beacon = {}
    for i, layer in enumerate(hf.model.layers):
        for part, name, mod in [("self_attn", "q", layer.self_attn.q_proj), ("self_attn", "k", layer.self_attn.k_proj),
                                ("self_attn", "v", layer.self_attn.v_proj), ("self_attn", "o", layer.self_attn.o_proj),
                                ("mlp", "up", layer.mlp.up_proj), ("mlp", "down", layer.mlp.down_proj)]:
            w = mod.weight.float()
            beacon[f"model.layers.{i}.{part}.beacon_{name}_proj.weight"] = w + 0.5 * w.std() * torch.randn(w.shape, generator=g)
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in beacon.items()}, os.path.join(OUT, "tiny-llama-adapter.safetensors"))

    copied = Reference(hf)
    check_against_transformers(copied, hf, ids, 1e-4)
    adapted = Reference(hf, beacon)
    L, S, Q, steps = 16, 12, 6, 5
    bos = tok.token_to_id("<s>")
    assert ids[0] == bos
    meta = {"model": "tiny-llama", "ids": ids, "local_window": L, "chunk_size": S, "query_len": Q,
            "steps": steps, "runs": []}
    tensors = {}
    runs = [
        ("exact", "copied", "candidates_first", "exact"),
        ("exact_adapter", "adapter", "candidates_first", "exact"),
        ("cached_local_adapter", "adapter", "candidates_first", "cached_local"),
        ("frozen_adapter", "adapter", "candidates_first", "frozen"),
        ("exact_adapter_sink_first", "adapter", "sink_first", "exact"),
        ("cached_local_adapter_sink_first", "adapter", "sink_first", "cached_local"),
        ("min_entropy", "copied", "candidates_first", "min_entropy"),
    ]
    for run, weights, order, mode in runs:
        ref = adapted if weights == "adapter" else copied
        gen, logits = run_mode(ref, ids, L, S, Q, [bos], order, mode, steps)
        meta["runs"].append({"name": run, "weights": weights, "order": order, "mode": mode, "greedy": gen})
        tensors[run] = logits
        print(run, gen)
    write("tiny-llama", meta, tensors)


def tiny_lora():
    """The tiny model with a seeded low-rank adapter on q, k, v and o (rank 3)."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    d = os.path.join(ROOT, "tests", "fixtures", "tiny-llama")
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    g = torch.Generator().manual_seed(12)
    adapter = {}
    for i, layer in enumerate(hf.model.layers):
        for name in ["q", "k", "v", "o"]:
            w = getattr(layer.self_attn, name + "_proj").weight
            stem = f"model.layers.{i}.self_attn.beacon_{name}_proj"
            adapter[stem + ".lora_a"] = torch.randn(3, w.shape[1], generator=g) / math.sqrt(w.shape[1])
            adapter[stem + ".lora_b"] = 0.5 * w.std() * torch.randn(w.shape[0], 3, generator=g)
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in adapter.items()}, os.path.join(OUT, "tiny-llama-lora-adapter.safetensors"))
    ref = Reference(hf, merge_lora(hf, adapter))
    text = "The grass is green. The sky is blue. The pass key is 52718. Remember it. " * 3 + "What is the pass key?"
    ids = tok.encode(text).ids
    L, S, Q, steps = 16, 12, 6, 5
    bos = tok.token_to_id("<s>")
    meta = {"model": "tiny-llama", "ids": ids, "local_window": L, "chunk_size": S, "query_len": Q, "steps": steps, "runs": []}
    tensors = {}
    for mode in ["exact", "cached_local"]:
        gen, logits = run_mode(ref, ids, L, S, Q, [bos], "candidates_first", mode, steps)
        meta["runs"].append({"name": mode + "_lora", "weights": "lora", "order": "candidates_first", "mode": mode, "greedy": gen})
        tensors[mode + "_lora"] = logits
        print(mode, gen)
    write("tiny-llama-lora", meta, tensors)


def smollm2(gguf_path, adapter_path=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager").eval()
    adapter = None
    if adapter_path:
        from safetensors.torch import load_file

        adapter = load_file(adapter_path)
    ref = Reference(hf, merge_lora(hf, adapter) if adapter else None)
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    needle = "The pass key is 68341. Remember it. 68341 is the pass key. "
    body = filler * 250
    cut = len(body) * 2 // 5
    text = body[:cut] + needle + body[cut:] + "What is the pass key? The pass key is"
    ids = tok(text, add_special_tokens=True)["input_ids"]
    print("input tokens:", len(ids))
    check_against_transformers(ref, hf, ids[:300], 2e-3)
    L, S, Q, steps = 1024, 1024, 256, 5
    # With an adapter: cached-local decoding, the mode the trainer's objective is (teacher-forced).
    mode = "cached_local" if adapter else "exact"
    gen, logits = run_mode(ref, ids, L, S, Q, [], "candidates_first", mode, steps)
    print(mode, "greedy:", gen, repr(tok.decode(gen)))
    meta = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "ids": ids, "local_window": L, "chunk_size": S,
            "query_len": Q, "steps": steps,
            "runs": [{"name": mode, "weights": "adapter" if adapter else "copied", "order": "candidates_first",
                      "mode": mode, "greedy": gen}]}
    if adapter:
        meta["adapter"] = os.path.basename(adapter_path)
    write("smollm2-adapter" if adapter else "smollm2", meta, {mode: logits})


if __name__ == "__main__":
    if sys.argv[1] == "tiny":
        tiny()
    elif sys.argv[1] == "tiny-lora":
        tiny_lora()
    elif sys.argv[1] == "smollm2":
        smollm2(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        sys.exit(__doc__)
