#!/usr/bin/env python3
"""The long-context evaluation suite's generator: RULER-style tasks hidden in real prose.

Prose: the Jargon File's lexicon (`scripts/fetch_eval_text.sh`), which the trainer never reads. Its
entries are split in two by a hash of their headword: "dev" entries serve every choice made while
building the engine, "heldout" entries only the reported held-out rows. Every task also has two sets
of wordings (facts, questions, answer prefixes, names): dev and held-out, never mixed.

Tasks (each sample: a document, a question, an answer prefix for the assistant turn, and the
strings the answer must contain; scored as RULER scores, the fraction of them found):
  single-number  one fact with a 7-digit number
  single-word    one fact whose value is a surname
  multikey       four facts of one shape about different objects; one is asked
  multivalue     three values of one key at different depths; all are asked
  multiquery     four facts; two are asked at once
  vartrack       a value copied along a chain of four variables; all four names are asked
  twohop         two facts far apart (who lives where, and that town's number); the number is asked
  passkey        the standard pass key in periodic filler (not prose; kept for comparison)

Lengths are nominal: the evaluator (`focusllm eval`, focusllm-cli/src/commands/eval.rs) cuts the haystack to the length less 256
tokens (room for the template, the question and the answer) in the model's own tokens.

python3 scripts/make_eval.py --text "$(bash scripts/fetch_eval_text.sh)" --lengths 4k,8k,16k \
    --samples 2 --out eval.jsonl
"""
import argparse
import hashlib
import json
import random
import re

TASKS = ["single-number", "single-word", "multikey", "multivalue", "multiquery", "vartrack", "twohop", "passkey"]

WORDING = {
    "dev": {
        "objects": ["harbour gate", "north tower", "blue cabinet", "river lock", "old observatory", "night train",
                    "paper mill", "clock room", "south pier", "glass house", "salt warehouse", "iron bridge"],
        "attrs": ["access code", "serial number"],
        "fact": ["The {attr} of the {obj} is {val}.", "Keep this in mind: the {obj} has the {attr} {val}."],
        "question": [("What is the {attr} of the {obj}?", "The {attr} of the {obj} is")],
        "roles": ["keeper", "architect"],
        "word_fact": ["The {role} of the {obj} is a person named {val}.", "Everyone knows that {val} is the {role} of the {obj}."],
        "word_question": [("Who is the {role} of the {obj}? Give the name.", "The {role} of the {obj} is named")],
        "names": ["Delacroix", "Okonkwo", "Pemberton", "Vasquez", "Lindqvist", "Abernathy", "Moreau", "Takahashi",
                  "Castellano", "Fairweather", "Novak", "Oyelaran"],
        "multi_fact": "One of the {attr}s of the {obj} is {val}.",
        "multi_question": ("What are all the {attr}s of the {obj}? List every one.", "The {attr}s of the {obj} are"),
        "mq_question": ("What are the {attr}s of the {obj1} and of the {obj2}?", "Answer:"),
        "var_first": "Let {x} be {val}.",
        "var_next": "Let {y} equal {x}.",
        "var_question": ("Which variables hold the value {val}? Name all of them.", "The variables that hold {val} are"),
        "people": ["Marta", "Ivo", "Rosalind", "Teodor", "Annika", "Bastien"],
        "towns": ["Kerrow", "Aldmoor", "Fenwick", "Stellby", "Orrin", "Haldane"],
        "hop_a": "{person} lives in the town of {town}.",
        "hop_b": "The post office of {town} has the number {val}.",
        "hop_question": ("What is the number of the post office in the town where {person} lives?", "The number is"),
    },
    "heldout": {
        "objects": ["copper vault", "west bridge", "garden shed", "signal box", "library annex", "mountain hut",
                    "wine cellar", "radio mast", "ferry dock", "chapel bell", "coal mine", "water tower"],
        "attrs": ["unlock number", "registry number"],
        "fact": ["Someone wrote on the wall that the {attr} for the {obj} is {val}.", "Important: {val} is the {attr} of the {obj}."],
        "question": [("Which {attr} does the {obj} have?", "The {obj} has the {attr}")],
        "roles": ["owner", "caretaker"],
        "word_fact": ["The {obj} belongs to its {role}, whose name is {val}.", "As the records show, the {role} of the {obj} is called {val}."],
        "word_question": [("What is the name of the {role} of the {obj}?", "The name of the {role} of the {obj} is")],
        "names": ["Achterberg", "Quisling", "Mbeki", "Rautenberg", "Iglesias", "Thorvaldsen", "Beaumont", "Kurosawa",
                  "Villanueva", "Whitlock", "Sorensen", "Adeyemi"],
        "multi_fact": "A further {attr} of the {obj}: {val}.",
        "multi_question": ("Give every {attr} of the {obj} that the text mentions.", "The {obj} has these {attr}s:"),
        "mq_question": ("Tell me the {attr} of the {obj1} and the {attr} of the {obj2}.", "Answer:"),
        "var_first": "Set {x} to {val}.",
        "var_next": "Set {y} to the value of {x}.",
        "var_question": ("Find every variable whose value is {val}.", "The variables whose value is {val} are"),
        "people": ["Gunnar", "Leocadia", "Piet", "Soraya", "Emeric", "Wilhelmina"],
        "towns": ["Brackwater", "Lindenfels", "Marrowby", "Quenton", "Esk", "Tarrant"],
        "hop_a": "{person} moved to {town} last spring.",
        "hop_b": "In {town}, the number of the town hall is {val}.",
        "hop_question": ("{person} needs the number of the town hall in the town {person} moved to. What is it?", "The number is"),
    },
}

PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


def lexicon_entries(path):
    """The Jargon File's lexicon entries as paragraphs of prose, in file order: (headword, text)."""
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    entries, head, body = [], None, []

    def flush():
        if head is not None:
            paras = [re.sub(r"\s+", " ", p).strip() for p in "\n".join(body).split("\n\n")]
            text = "\n\n".join(p for p in paras if p)
            text = re.sub(r"[{}]", "", text)
            if len(text) > 40:
                entries.append((head, f"{head}: {text}"))

    for line in lines:
        m = re.match(r"^   :([^:]+):", line)
        if m:
            flush()
            head, body = m.group(1), [line[m.end():].strip()]
        elif head is not None and line and not line.startswith(" "):
            break  # the appendices after the lexicon
        elif head is not None:
            body.append(line.strip())
    flush()
    return entries


def split_entries(entries):
    out = {"dev": [], "heldout": []}
    for head, text in entries:
        bucket = int(hashlib.sha256(head.encode()).hexdigest(), 16) % 2
        out["dev" if bucket == 0 else "heldout"].append(text)
    return out


def haystack(paragraphs, chars, rng):
    """Consecutive entries from a random start (wrapping), about `chars` characters: a list of paragraphs."""
    start = rng.randrange(len(paragraphs))
    out, n, i = [], 0, start
    while n < chars:
        out.append(paragraphs[i % len(paragraphs)])
        n += len(out[-1]) + 2
        i += 1
    return out


def insert(paras, needles):
    """The sample's text: the paragraphs of its haystack and the (depth, sentence) needles. The
    evaluator keeps as many paragraphs as the nominal length holds in the model's tokens, then puts
    each needle between paragraphs at its depth of what it kept."""
    return dict(paragraphs=list(paras), needles=[[d, s] for d, s in needles])


def number(rng, digits=7):
    return str(rng.randrange(10 ** (digits - 1), 10 ** digits))


def var_name(rng):
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(5))


def make_sample(task, split, length, seed, paragraphs, cpt):
    w = WORDING[split]
    rng = random.Random(f"{task}/{split}/{length}/{seed}")
    chars = int(length * cpt)  # more than the length needs; the evaluator cuts it in tokens
    depth = [0.2, 0.5, 0.8][seed % 3]
    attr = rng.choice(w["attrs"])
    objs = rng.sample(w["objects"], 4)
    if task == "passkey":
        key = str(rng.randrange(10000, 100000))
        reps = max(1, chars // len(PASSKEY_FILLER))
        paras = [PASSKEY_FILLER.strip()] * reps
        needle = f"The pass key is {key}. Remember it. {key} is the pass key."
        return dict(**insert(paras, [(depth, needle)]), question="What is the pass key?",
                    prefix="The pass key is", answers=[key], depth=depth)
    paras = haystack(paragraphs, chars, rng)
    if task == "single-number":
        val = number(rng)
        fact = rng.choice(w["fact"]).format(attr=attr, obj=objs[0], val=val)
        q, p = rng.choice(w["question"])
        return dict(**insert(paras, [(depth, fact)]), question=q.format(attr=attr, obj=objs[0]),
                    prefix=p.format(attr=attr, obj=objs[0]), answers=[val], depth=depth)
    if task == "single-word":
        role, val = rng.choice(w["roles"]), rng.choice(w["names"])
        fact = rng.choice(w["word_fact"]).format(role=role, obj=objs[0], val=val)
        q, p = rng.choice(w["word_question"])
        return dict(**insert(paras, [(depth, fact)]), question=q.format(role=role, obj=objs[0]),
                    prefix=p.format(role=role, obj=objs[0]), answers=[val], depth=depth)
    if task in ("multikey", "multiquery"):
        vals = [number(rng) for _ in objs]
        form = rng.choice(w["fact"])
        needles = [(depth if i == 0 else rng.uniform(0.05, 0.95), form.format(attr=attr, obj=o, val=v))
                   for i, (o, v) in enumerate(zip(objs, vals))]
        doc = insert(paras, needles)
        if task == "multikey":
            q, p = rng.choice(w["question"])
            return dict(**doc, question=q.format(attr=attr, obj=objs[0]), prefix=p.format(attr=attr, obj=objs[0]),
                        answers=[vals[0]], depth=depth)
        q, p = w["mq_question"]
        return dict(**doc, question=q.format(attr=attr, obj1=objs[0], obj2=objs[1]), prefix=p,
                    answers=vals[:2], depth=depth)
    if task == "multivalue":
        vals = [number(rng) for _ in range(3)]
        needles = [(rng.uniform(0.05, 0.95), w["multi_fact"].format(attr=attr, obj=objs[0], val=v)) for v in vals]
        q, p = w["multi_question"]
        return dict(**insert(paras, needles), question=q.format(attr=attr, obj=objs[0]),
                    prefix=p.format(attr=attr, obj=objs[0]), answers=vals, depth=None)
    if task == "vartrack":
        val = number(rng, 5)
        names = [var_name(rng) for _ in range(4)]
        sentences = [w["var_first"].format(x=names[0], val=val)]
        sentences += [w["var_next"].format(y=names[i + 1], x=names[i]) for i in range(3)]
        depths = sorted(rng.uniform(0.05, 0.95) for _ in sentences)
        q, p = w["var_question"]
        return dict(**insert(paras, list(zip(depths, sentences))), question=q.format(val=val),
                    prefix=p.format(val=val), answers=names, depth=None)
    if task == "twohop":
        person, town, val = rng.choice(w["people"]), rng.choice(w["towns"]), number(rng, 6)
        d1, d2 = rng.uniform(0.05, 0.4), rng.uniform(0.6, 0.95)
        if rng.random() < 0.5:
            d1, d2 = d2, d1
        needles = [(d1, w["hop_a"].format(person=person, town=town)), (d2, w["hop_b"].format(town=town, val=val))]
        q, p = w["hop_question"]
        return dict(**insert(paras, needles), question=q.format(person=person), prefix=p, answers=[val], depth=None)
    raise ValueError(task)


def parse_len(s):
    s = s.strip().lower()
    return int(s[:-1]) * 1024 if s.endswith("k") else int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", required=True, help="the Jargon File (scripts/fetch_eval_text.sh prints its path)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--lengths", default="4k,8k,16k,32k,64k,128k")
    ap.add_argument("--splits", default="dev,heldout")
    ap.add_argument("--samples", type=int, default=3, help="samples per task, length and split (depths cycle 0.2/0.5/0.8)")
    ap.add_argument("--chars-per-token", type=float, default=6.0, help="characters of haystack per nominal token (an overestimate)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    paragraphs = split_entries(lexicon_entries(a.text))
    with open(a.out, "w", encoding="utf-8") as f:
        for length in [parse_len(x) for x in a.lengths.split(",")]:
            for task in a.tasks.split(","):
                for split in a.splits.split(","):
                    for seed in range(a.samples):
                        s = make_sample(task, split, length, seed, paragraphs[split], a.chars_per_token)
                        s.update(task=task, split=split, length=length, seed=seed)
                        f.write(json.dumps(s) + "\n")


if __name__ == "__main__":
    main()
