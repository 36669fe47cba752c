"""Writes the seeds of the cargo-fuzz targets (fuzz/seeds/TARGET/) from the fixtures of
tests/fixtures: copies of small files, and inputs framed as the targets read them (tokenizer.json
or a template, a NUL, then text or conversation bytes; adapters cut from the fixtures' tensors).
Needs only Python's standard library: python3 fuzz/make_seeds.py
"""
import json, struct, os, shutil
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = os.path.join(ROOT, "fuzz", "seeds")
F = os.path.join(ROOT, "tests", "fixtures")

def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], data[s:e])
    return out, h.get("__metadata__")

def write_st(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    blobs = []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def d(name):
    p = os.path.join(S, name)
    os.makedirs(p, exist_ok=True)
    return p

# safetensors_header: real files and the sharded index.
st = d("safetensors_header")
shutil.copy(os.path.join(F, "focus", "tiny-llama-lora-adapter.safetensors"), st)
shutil.copy(os.path.join(F, "gguf", "types_expected.safetensors"), st)
shutil.copy(os.path.join(F, "tiny-qwen2", "model.safetensors.index.json"), st)
shutil.copy(os.path.join(F, "tiny-qwen2", "model-00001-of-00004.safetensors"), st)

# model_config: the fixtures' config.json files.
mc = d("model_config")
for m in ["tiny-llama", "tiny-mistral", "tiny-qwen2"]:
    shutil.copy(os.path.join(F, m, "config.json"), os.path.join(mc, m + ".json"))

# tokenizer: tokenizer.json, NUL, text (and ids read from the text's bytes).
tk = d("tokenizer")
text = "Hello world, 123 <s> </s> <|endoftext|> ünïcödé ☃ 日本語\n\tThe capital of France is Paris.".encode()
for m in ["tiny-llama", "tiny-qwen2"]:
    tj = open(os.path.join(F, m, "tokenizer.json"), "rb").read()
    open(os.path.join(tk, m + ".bin"), "wb").write(tj + b"\0" + text)
open(os.path.join(tk, "text.bin"), "wb").write(b"\0" + text + bytes(range(1, 256)))

# adapter: the low-rank adapter, a cut of the full one, and a Qwen2 one with biases.
ad = d("adapter")
shutil.copy(os.path.join(F, "focus", "tiny-llama-lora-adapter.safetensors"), ad)
full, _ = read_st(os.path.join(F, "focus", "tiny-llama-adapter.safetensors"))
cut = {k: v for k, v in full.items() if k.startswith("model.layers.1.self_attn.beacon_k") or k.startswith("model.layers.0.self_attn.beacon_v")}
write_st(os.path.join(ad, "tiny-llama-full-kv.safetensors"), cut)
q1, _ = read_st(os.path.join(F, "tiny-qwen2", "model-00002-of-00004.safetensors"))
qwen = {}
for name, t in q1.items():
    if ".self_attn.k_proj." in name:
        qwen[name.replace("k_proj", "beacon_k_proj")] = t
write_st(os.path.join(ad, "tiny-qwen2-k-bias.safetensors"), qwen)

# chat_template: template, NUL, conversation bytes (decoded with arbitrary).
ct = d("chat_template")
conv = b"\x01\x03<s>\x04</s>\x01\x00\x00\x00\x00\x0bhello there\x01\x01\x00\x00\x00\x02hi\x01\x02\x00\x00\x00\x07a reply"
open(os.path.join(ct, "conversation.bin"), "wb").write(b"\0" + conv)
tmpl = ("{% for message in messages %}{{ '<s>' + message['role'] + '\n' + message['content'] + '</s>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}").encode()
open(os.path.join(ct, "fixture-template.bin"), "wb").write(tmpl + b"\0" + conv)
py = ("{% for m in messages %}{{ m['role'] | upper }}:{{ m.content.strip() }}{% if not loop.last %}\n{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}{{ bos_token }}A:{% else %}{{ raise_exception('no prompt') }}{% endif %}").encode()
open(os.path.join(ct, "methods-template.bin"), "wb").write(py + b"\0" + conv)

# gguf_metadata: the first byte picks the fixture; the rest is decoded into edits.
gm = d("gguf_metadata")
for i in range(4):
    open(os.path.join(gm, f"fixture-{i}.bin"), "wb").write(bytes([i]))
# an edit: set llama.block_count (Key::Arch(Llama, 3)) to Small(1)
open(os.path.join(gm, "edit.bin"), "wb").write(bytes([0, 0, 1, 0, 1, 0, 3, 0, 12, 1]))
