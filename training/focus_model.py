"""FocusLLM's forward for training: the frozen base model, trainable low-rank candidate projections,
and the loss of an answer span predicted through the memory chunks' candidates.

The semantics are those of docs/algorithm.md with the project's cached-local decoding, teacher-forced:

* every memory chunk c runs `chunk_c ++ query ++ answer[:-1]` with the ordinary projections (this is
  the chunk's raw cache; the base is frozen, so it needs no gradient);
* the candidate for predicting answer[r] is the token at position p0 + r of that forward (p0 = the
  last query token) recomputed with the candidate projections: it attends to the ordinary keys
  before it and to itself, exactly as exact/cached-local decoding computes it one token at a time;
* the local forward runs `local ++ answer[:-1]` with the n candidates of each chunk at positions
  0..n-1 before it; the rows that predict answer[0] and earlier see candidate set 0 (the prefill's),
  the row that predicts answer[r] sees set r, as cached-local decoding does.

Keys and values are kept before RoPE and rotated with each forward's own positions, as in the engine.
"""
import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

PROJ = ("q", "k", "v", "o")


def wide(t):
    """t in at least float32 (for norms and softmax under bf16)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class Base:
    """The frozen weights of a LLaMA-family model that transformers has loaded (f32 or bf16)."""

    def __init__(self, hf_model, dtype=torch.float32, device="cpu"):
        m, c = hf_model.model, hf_model.config
        self.cfg = c
        to = dict(dtype=dtype, device=device)
        self.dtype, self.device = dtype, device
        self.embed = m.embed_tokens.weight.detach().to(**to)
        self.norm = m.norm.weight.detach().to(**to)
        self.lm_head = hf_model.lm_head.weight.detach().to(**to)
        self.eps = c.rms_norm_eps
        self.nh, self.nkv = c.num_attention_heads, c.num_key_value_heads
        self.hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.inv_freq = m.rotary_emb.inv_freq.detach().float().to(device)
        self.layers = []
        for layer in m.layers:
            a, mlp = layer.self_attn, layer.mlp

            def w(mod):
                return (mod.weight.detach().to(**to), None if mod.bias is None else mod.bias.detach().to(**to))

            self.layers.append(dict(
                in_norm=layer.input_layernorm.weight.detach().to(**to),
                post_norm=layer.post_attention_layernorm.weight.detach().to(**to),
                q=w(a.q_proj), k=w(a.k_proj), v=w(a.v_proj), o=w(a.o_proj),
                gate=w(mlp.gate_proj), up=w(mlp.up_proj), down=w(mlp.down_proj),
            ))

    def dims(self, name):
        """(out, in) of projection `name` in every layer."""
        w = self.layers[0][name][0]
        return w.shape[0], w.shape[1]

    # --- the pieces of one layer ---------------------------------------------------------------
    def rmsnorm(self, x, w):
        xf = wide(x)
        return (wide(w) * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps))).to(x.dtype)

    def rope(self, x, positions):
        """x [..., T, heads, D] rotated at `positions` [T] (rotate_half convention)."""
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos()[:, None, :].to(x.dtype), emb.sin()[:, None, :].to(x.dtype)
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    @staticmethod
    def linear(x, wb):
        w, b = wb
        y = x @ w.T
        return y if b is None else y + b

    def mlp(self, L, h):
        x = self.rmsnorm(h, L["post_norm"])
        return h + self.linear(F.silu(self.linear(x, L["gate"])) * self.linear(x, L["up"]), L["down"])

    def expand(self, t):
        """[..., kv, D] -> [..., heads, D] (grouped-query attention)."""
        return t.repeat_interleave(self.nh // self.nkv, dim=-2)

    def logits(self, h):
        return self.rmsnorm(h, self.norm) @ self.lm_head.T


class CandidateAdapter(torch.nn.Module):
    """Low-rank candidate projections: beacon_x_proj = x_proj + lora_b @ lora_a for x in q, k, v, o,
    with lora_b zero at the start so that training begins from the training-free copies."""

    def __init__(self, base, rank):
        super().__init__()
        self.rank = rank
        self.a = torch.nn.ParameterDict()
        self.b = torch.nn.ParameterDict()
        for i in range(len(base.layers)):
            for p in PROJ:
                out, inp = base.dims(p)
                key = f"{i}_{p}"
                self.a[key] = torch.nn.Parameter(torch.randn(rank, inp, device=base.device) / math.sqrt(inp))
                self.b[key] = torch.nn.Parameter(torch.zeros(out, rank, device=base.device))

    def project(self, base, layer, i, p, x):
        """The candidate projection `p` of layer `i` applied to x."""
        key = f"{i}_{p}"
        a, b = self.a[key].to(x.dtype), self.b[key].to(x.dtype)
        return base.linear(x, layer[p]) + (x @ a.T) @ b.T

    def tensors(self):
        """The adapter file's tensors, under the engine's names (lora_a [r, in], lora_b [out, r])."""
        out = {}
        for key in self.a:
            i, p = key.split("_")
            name = f"model.layers.{i}.self_attn.beacon_{p}_proj"
            out[name + ".lora_a"] = self.a[key].detach().float().cpu().contiguous()
            out[name + ".lora_b"] = self.b[key].detach().float().cpu().contiguous()
        return out

    def load_tensors(self, tensors):
        for key in self.a:
            i, p = key.split("_")
            name = f"model.layers.{i}.self_attn.beacon_{p}_proj"
            self.a[key].data.copy_(tensors[name + ".lora_a"])
            self.b[key].data.copy_(tensors[name + ".lora_b"])


def ordinary_stream(base, x):
    """Frozen forward over x [n, T]; returns per layer the pre-RoPE values and the rotated keys
    [n, T, kv, D] (all a chunk's candidates need). No gradient."""
    n, T = x.shape
    pos = torch.arange(T, device=x.device)
    h = base.embed[x]
    kept = []
    with torch.no_grad():
        for li, L in enumerate(base.layers):
            a = base.rmsnorm(h, L["in_norm"])
            q = base.linear(a, L["q"]).view(n, T, base.nh, base.hd)
            k = base.linear(a, L["k"]).view(n, T, base.nkv, base.hd)
            v = base.linear(a, L["v"]).view(n, T, base.nkv, base.hd)
            kr = base.rope(k, pos)
            kept.append((kr, v))
            if li + 1 == len(base.layers):
                break
            qr = base.rope(q, pos)
            o = F.scaled_dot_product_attention(
                qr.transpose(1, 2), base.expand(kr).transpose(1, 2), base.expand(v).transpose(1, 2), is_causal=True
            ).transpose(1, 2).reshape(n, T, -1)
            h = base.mlp(L, h + base.linear(o, L["o"]))
    return kept


def candidate_layer(base, adapter, i, hc, kr_o, v_o, p0):
    """One layer of the candidate stream: hc [n, A, hidden] are the candidate rows at positions
    p0..p0+A-1; each attends to the ordinary keys before its position and to itself."""
    L = base.layers[i]
    n, A, _ = hc.shape
    T = kr_o.shape[1]
    x = base.rmsnorm(hc, L["in_norm"])
    proj = (lambda p, t: adapter.project(base, L, i, p, t)) if adapter is not None else (lambda p, t: base.linear(t, L[p]))
    q = proj("q", x).view(n, A, base.nh, base.hd)
    k = proj("k", x).view(n, A, base.nkv, base.hd)
    v = proj("v", x).view(n, A, base.nkv, base.hd)
    pos = torch.arange(p0, p0 + A, device=hc.device)
    qr, kr = base.rope(q, pos), base.rope(k, pos)
    scale = 1.0 / math.sqrt(base.hd)
    s_past = torch.einsum("nahd,nthd->nhat", qr, base.expand(kr_o)) * scale
    allowed = torch.arange(T, device=hc.device)[None, :] < pos[:, None]
    s_past = s_past.masked_fill(~allowed[None, None], float("-inf"))
    s_self = (qr * base.expand(kr)).sum(-1).transpose(1, 2)[..., None] * scale
    p = torch.softmax(wide(torch.cat([s_past, s_self], -1)), -1).to(hc.dtype)
    o = torch.einsum("nhat,nthd->nahd", p[..., :T], base.expand(v_o)) + p[..., T:].transpose(1, 2) * base.expand(v)
    hc = hc + proj("o", o.reshape(n, A, -1))
    return base.mlp(L, hc), k, v


def local_layer(base, i, h, ck, cv, sets, q_pos):
    """One layer of the local forward: h [TL, hidden] at positions q_pos; row t also attends to the
    candidates ck/cv [n, A, kv, D] (pre-RoPE) of set sets[t], placed at positions 0..n-1."""
    L = base.layers[i]
    TL = h.shape[0]
    x = base.rmsnorm(h, L["in_norm"])
    q = base.rope(base.linear(x, L["q"]).view(TL, base.nh, base.hd), q_pos)
    k = base.rope(base.linear(x, L["k"]).view(TL, base.nkv, base.hd), q_pos)
    v = base.linear(x, L["v"]).view(TL, base.nkv, base.hd)
    scale = 1.0 / math.sqrt(base.hd)
    s_loc = torch.einsum("thd,shd->hts", q, base.expand(k)) * scale
    causal = torch.ones(TL, TL, dtype=torch.bool, device=h.device).tril()
    s_loc = s_loc.masked_fill(~causal[None], float("-inf"))
    parts = [s_loc]
    n = 0 if ck is None else ck.shape[0]
    if n:
        ckr = base.rope(ck.transpose(0, 1), torch.arange(n, device=h.device)).transpose(0, 1)  # [n, A, kv, D]
        k_sel = ckr[:, sets].transpose(0, 1)  # [TL, n, kv, D]
        v_sel = cv[:, sets].transpose(0, 1)
        s_mem = torch.einsum("thd,tnhd->htn", q, base.expand(k_sel)) * scale
        parts.insert(0, s_mem)
    p = torch.softmax(wide(torch.cat(parts, -1)), -1).to(h.dtype)
    o = torch.einsum("hts,shd->thd", p[..., n:], base.expand(v))
    if n:
        o = o + torch.einsum("htn,tnhd->thd", p[..., :n], base.expand(v_sel))
    h = h + base.linear(o.reshape(TL, -1), L["o"])
    return base.mlp(L, h)


def chunk_inputs(base, chunks, query, answer):
    """The chunk forwards' tokens [n, S + Q + A - 1]: chunk ++ query ++ answer[:-1]."""
    tail = torch.tensor(list(query) + list(answer[:-1]), device=base.device)
    return torch.cat([chunks.to(base.device), tail.expand(chunks.shape[0], -1)], 1)


def focus_logits(base, adapter, chunks, query, local, answer, grad_checkpoint=False, kept=None):
    """Logits [A, vocab] for the A answer tokens (teacher-forced), predicted through the memory.

    chunks: LongTensor [n, S] (n may be 0); query: the last tokens of `local` (with the prefix, if
    any, in front); local: the local window (prefix ++ local tokens); answer: A >= 1 tokens.
    kept: the chunks' ordinary stream when already computed (it does not depend on the adapter)."""
    dev = base.device
    A = len(answer)
    n = 0 if chunks is None else chunks.shape[0]
    if n:
        x = chunk_inputs(base, chunks, query, answer)
        if kept is None:
            kept = ordinary_stream(base, x)
        p0 = chunks.shape[1] + len(query) - 1
        hc = base.embed[x[:, p0:]]
        cks, cvs = [], []
        for i in range(len(base.layers)):
            kr_o, v_o = kept[i]
            if grad_checkpoint and torch.is_grad_enabled():
                hc, k, v = checkpoint(candidate_layer, base, adapter, i, hc, kr_o, v_o, p0, use_reentrant=False)
            else:
                hc, k, v = candidate_layer(base, adapter, i, hc, kr_o, v_o, p0)
            cks.append(k)
            cvs.append(v)
    TL = len(local) + A - 1
    rows = list(local) + list(answer[:-1])
    h = base.embed[torch.tensor(rows, device=dev)]
    q_pos = torch.arange(n, n + TL, device=dev)
    sets = torch.clamp(torch.arange(TL, device=dev) - (len(local) - 1), min=0)
    for i in range(len(base.layers)):
        k_i = cks[i] if n else None
        v_i = cvs[i] if n else None
        if grad_checkpoint and torch.is_grad_enabled():
            h = checkpoint(local_layer, base, i, h, k_i, v_i, sets, q_pos, use_reentrant=False)
        else:
            h = local_layer(base, i, h, k_i, v_i, sets, q_pos)
    logits = base.logits(h[len(local) - 1:])
    return logits if logits.dtype == torch.float64 else logits.float()


def plain_logits(base, tokens, last):
    """Ordinary causal forward over `tokens` (no FocusLLM); logits of the last `last` positions."""
    x = torch.tensor([tokens], device=base.device)
    T = x.shape[1]
    pos = torch.arange(T, device=base.device)
    h = base.embed[x]
    with torch.no_grad():
        for L in base.layers:
            a = base.rmsnorm(h, L["in_norm"])
            q = base.rope(base.linear(a, L["q"]).view(1, T, base.nh, base.hd), pos)
            k = base.rope(base.linear(a, L["k"]).view(1, T, base.nkv, base.hd), pos)
            v = base.linear(a, L["v"]).view(1, T, base.nkv, base.hd)
            o = F.scaled_dot_product_attention(
                q.transpose(1, 2), base.expand(k).transpose(1, 2), base.expand(v).transpose(1, 2), is_causal=True
            ).transpose(1, 2).reshape(1, T, -1)
            h = base.mlp(L, h + base.linear(o, L["o"]))
        return base.logits(h[0, T - last:]).float()


def focus_loss(base, adapter, example, grad_checkpoint=False):
    """Mean cross-entropy of the example's answer tokens."""
    logits = focus_logits(base, adapter, example["chunks"], example["query"], example["local"], example["answer"],
                          grad_checkpoint)
    target = torch.tensor(example["answer"], device=logits.device)
    return F.cross_entropy(logits, target)


def load_base(gguf_path, dtype=torch.float32, device="cpu"):
    """The model and tokenizer from a GGUF file, through transformers (dequantised)."""
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager").eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    return hf, tok, Base(hf, dtype=dtype, device=device)
