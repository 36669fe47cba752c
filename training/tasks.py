"""Training text and the three kinds of training example.

Text: the King James Bible and the Python 3.11 documentation sources, both from Debian packages
(`fetch_data.sh`). About a tenth of each is held out for evaluation: the last tenth of the Bible
(by characters) and every Python documentation file whose name hashes to 0 mod 10.

Examples (each: memory chunks, a local window, an answer span to predict):
* continuation: the local window is the text that follows the memory; predict the next tokens;
* repetition: the local window ends with the first few tokens of a span taken from inside the
  memory; predict the rest of the span (only the candidates can carry it);
* retrieval: a fact sentence (many wordings, random names, attributes and values) is put at a
  random place in the memory and the local window ends with a question about it (many wordings);
  predict the value. The filler is the real text, never a repeated template.
"""
import hashlib
import os
import random
import re

import torch

NAMES = ["Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena",
         "Marek", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tamsin", "Umar", "Vera", "Wendell", "Ximena",
         "Yusuf", "Zora", "the librarian", "the captain", "the old farmer", "my neighbour", "the new intern"]
ATTRS = ["locker number", "secret word", "favourite city", "access code", "room number", "lucky number",
         "middle name", "bank PIN", "flight number", "favourite colour", "car plate", "house number",
         "safe combination", "shoe size", "code name", "password"]
WORDS = ["amber", "harbour", "Lisbon", "violet", "tangerine", "Oslo", "granite", "meadow", "copper", "Nairobi",
         "saffron", "lantern", "Quito", "walnut", "juniper", "cobalt", "Tbilisi", "marble", "thistle", "Kyoto"]
FACTS = ["{n}'s {a} is {v}.", "The {a} of {n} is {v}.", "Remember this: {n} has the {a} {v}.",
         "Note that the {a} for {n} is {v}.", "By the way, {n} told me the {a} is {v}.",
         "For the record, {v} is {n}'s {a}.", "Write it down: the {a} belonging to {n} is {v}."]
QUESTIONS = ["What is {n}'s {a}? It is", "Question: what is the {a} of {n}? Answer:",
             "Earlier the text mentioned {n}'s {a}. It was", "Recall the {a} of {n}. The {a} is",
             "Which {a} does {n} have? {n}'s {a} is", "Tell me {n}'s {a}. The answer is"]


def _kjv_prose(text):
    """The `bible` program's output as prose: chapter headings kept, verse numbers and wraps removed."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [l.strip() for l in block.strip().splitlines()]
        if not lines:
            continue
        joined = " ".join(lines)
        joined = re.sub(r"(^|\s)\d+ ", r"\1", joined)
        out.append(joined)
    return "\n\n".join(out)


def load_texts(data_dir):
    """{"train": [docs], "heldout": [docs]} of plain text."""
    with open(os.path.join(data_dir, "kjv.txt"), encoding="utf-8", errors="replace") as f:
        kjv = _kjv_prose(f.read())
    cut = kjv.rfind("\n\n", 0, len(kjv) * 9 // 10)
    train, heldout = [kjv[:cut]], [kjv[cut:]]
    py_train, py_held = [], []
    pydir = os.path.join(data_dir, "pydocs")
    for name in sorted(os.listdir(pydir)):
        with open(os.path.join(pydir, name), encoding="utf-8", errors="replace") as f:
            doc = f.read()
        bucket = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10
        (py_held if bucket == 0 else py_train).append(doc)
    train.append("\n\n".join(py_train))
    heldout.append("\n\n".join(py_held))
    return {"train": train, "heldout": heldout}


def token_streams(tok, data_dir, cache_path):
    """Tokenised streams (one per source: KJV, Python docs) for train and held-out, cached."""
    if os.path.exists(cache_path):
        return torch.load(cache_path)
    texts = load_texts(data_dir)
    streams = {}
    for split, docs in texts.items():
        streams[split] = []
        for doc in docs:
            ids = []
            for piece in re.split(r"(?<=\n\n)", doc):
                if piece:
                    ids.extend(tok(piece, add_special_tokens=False)["input_ids"])
            streams[split].append(torch.tensor(ids, dtype=torch.int32))
    torch.save(streams, cache_path)
    return streams


class Sampler:
    """Draws training examples; every size is drawn per example from the configured sets."""

    def __init__(self, tok, streams, chunk_sizes, local_sizes, query_max, answer_len, max_memory_tokens,
                 min_chunks, task_weights, prefix, seed):
        self.tok, self.streams = tok, streams
        self.chunk_sizes, self.local_sizes = chunk_sizes, local_sizes
        self.query_max, self.answer_len = query_max, answer_len
        self.max_memory_tokens, self.min_chunks = max_memory_tokens, min_chunks
        self.kinds = list(task_weights)
        self.weights = [task_weights[k] for k in self.kinds]
        self.prefix = list(prefix)
        self.rng = random.Random(seed)

    def encode(self, text):
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def window(self, length):
        lengths = [len(s) for s in self.streams]
        stream = self.rng.choices(self.streams, weights=lengths)[0]
        start = self.rng.randrange(0, len(stream) - length)
        return stream[start:start + length].tolist()

    def sizes(self):
        S = self.rng.choice(self.chunk_sizes)
        L = self.rng.choice(self.local_sizes)
        Q = min(self.query_max, S, L)
        per_chunk = S + Q + self.answer_len
        most = max(self.min_chunks, self.max_memory_tokens // per_chunk)
        n = self.rng.randint(self.min_chunks, most)
        return S, L, Q, n

    def sample(self, kind=None):
        kind = kind or self.rng.choices(self.kinds, weights=self.weights)[0]
        S, L, Q, n = self.sizes()
        M, A = n * S, self.answer_len
        w = self.window(M + L + A)
        memory, after = w[:M], w[M:]
        if kind == "continuation":
            local, answer = after[:L], after[L:L + A]
        elif kind == "repetition":
            lead = self.rng.randint(8, 32)
            j = self.rng.randrange(0, M - lead - A)
            span = memory[j:j + lead + A]
            local, answer = after[:L - lead] + span[:lead], span[lead:]
        elif kind == "retrieval":
            name, attr = self.rng.choice(NAMES), self.rng.choice(ATTRS)
            if self.rng.random() < 0.6:
                value = str(self.rng.randint(10 ** (self.rng.randint(3, 6)), 10 ** 7 - 1))
            else:
                value = self.rng.choice(WORDS)
            fact = self.encode(" " + self.rng.choice(FACTS).format(n=name, a=attr, v=value) + " ")
            question = self.encode(" " + self.rng.choice(QUESTIONS).format(n=name, a=attr))
            answer = self.encode(" " + value + ".")
            at = self.rng.randrange(0, M - len(fact))
            memory = (memory[:at] + fact + memory[at:])[:M]
            local = after[:L - len(question)] + question
        else:
            raise ValueError(kind)
        return make_example(memory, local, answer, S, Q, self.prefix, kind)


def make_example(memory, local, answer, S, Q, prefix, kind):
    """An example in the form focus_model.focus_logits takes (memory a whole number of chunks)."""
    assert len(memory) % S == 0
    n = len(memory) // S
    chunks = torch.tensor(memory, dtype=torch.long).view(n, S) if n else None
    tail = list(local[-Q:])
    query = tail if tail[:len(prefix)] == prefix else prefix + tail
    local_tokens = list(local) if list(local[:len(prefix)]) == prefix else prefix + list(local)
    return {"kind": kind, "chunks": chunks, "query": query, "local": local_tokens, "answer": list(answer),
            "tokens": n * (S + len(query) + len(answer) - 1) + len(local_tokens) + len(answer) - 1}
