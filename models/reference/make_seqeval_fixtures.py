#!/usr/bin/env python3
"""seqeval reference numbers for the entity metrics in trainer/src/eval/entities.rs.

    /tmp/refvenv/bin/pip install seqeval          # 1.2.2 wrote the checked-in file
    /tmp/refvenv/bin/python models/reference/make_seqeval_fixtures.py

Writes trainer/tests/fixtures/seqeval_reference.json (relative to the repo root): seeded random
gold/predicted tag sequences (IOB2 and BIOES tag sets, with malformed sequences such as `O I-X`,
`B-X I-Y`, a lone `E-X`) plus hand-written edge cases, and for each case what seqeval says in three
modes:

* "default":      get_entities / classification_report(output_dict=True) with no mode (the lenient
                  conlleval chunking), plus precision_score / recall_score / f1_score (micro).
* "strict_iob2":  the same with mode='strict', scheme=IOB2.
* "strict_bioes": the same with mode='strict', scheme=IOBES.

A strict mode where seqeval raises (a prefix the scheme does not allow, e.g. `E-X` under IOB2) is
recorded as {"error": "<exception class>"}: the Rust code must refuse those inputs too.

Entities are [sentence, type, start, end) with `end` exclusive and positions inside the sentence
(seqeval's default mode flattens the sentences with an "O" between them and reports inclusive
ends; this script converts). Token accuracy is seqeval's accuracy_score. Averages over no entity
type at all are NaN in seqeval (numpy's mean of an empty array) and written as null.
"""

import json
import math
import os
import random
import warnings

import seqeval
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Entities

warnings.filterwarnings("ignore")  # zero-division warnings are expected (the value is 0)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO_ROOT, "trainer", "tests", "fixtures", "seqeval_reference.json")

TYPES = ["PER", "LOC", "DRUG"]


def num(x):
    x = float(x)
    return None if math.isnan(x) else x


def default_entities(sentences):
    """get_entities over the nested list, mapped from flat positions to (sentence, start, end)."""
    starts = []
    offset = 0
    for s in sentences:
        starts.append(offset)
        offset += len(s) + 1  # seqeval appends an "O" after every sentence
    out = []
    for kind, begin, end in get_entities(sentences):
        sent = max(i for i, s in enumerate(starts) if s <= begin)
        assert end < starts[sent] + len(sentences[sent]), "an entity crosses a sentence boundary"
        out.append([sent, kind, begin - starts[sent], end - starts[sent] + 1])
    return out


def strict_entities(sentences, scheme):
    return [[e.sent_id, e.tag, e.start, e.end] for sent in Entities(sentences, scheme).entities for e in sent]


def report(gold, pred, **mode):
    rep = classification_report(gold, pred, output_dict=True, **mode)
    return {
        name: {
            "precision": num(row["precision"]),
            "recall": num(row["recall"]),
            "f1": num(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in rep.items()
    }


def evaluate(gold, pred, scheme):
    mode = {} if scheme is None else {"mode": "strict", "scheme": scheme}
    try:
        if scheme is None:
            ents = (default_entities(gold), default_entities(pred))
        else:
            ents = (strict_entities(gold, scheme), strict_entities(pred, scheme))
        has_types = bool(ents[0] or ents[1])
        return {
            "gold_entities": ents[0],
            "pred_entities": ents[1],
            # classification_report's text form fails without any type; the dict form does not.
            "report": report(gold, pred, **mode) if has_types else {},
            "precision": num(precision_score(gold, pred, **mode)),
            "recall": num(recall_score(gold, pred, **mode)),
            "f1": num(f1_score(gold, pred, **mode)),
        }
    except (ValueError, KeyError) as err:
        return {"error": type(err).__name__}


def case(name, gold, pred):
    flat_gold = [t for s in gold for t in s]
    return {
        "name": name,
        "gold": gold,
        "pred": pred,
        "accuracy": num(accuracy_score(gold, pred)) if flat_gold else None,
        "default": evaluate(gold, pred, None),
        "strict_iob2": evaluate(gold, pred, IOB2),
        "strict_bioes": evaluate(gold, pred, IOBES),
    }


def well_formed(rng, length, bioes):
    tags = []
    i = 0
    while i < length:
        if rng.random() < 0.45:
            n = min(length - i, rng.choice([1, 1, 2, 3]))
            kind = rng.choice(TYPES)
            for k in range(n):
                if bioes and n == 1:
                    p = "S"
                elif k == 0:
                    p = "B"
                elif bioes and k == n - 1:
                    p = "E"
                else:
                    p = "I"
                tags.append(p + "-" + kind)
            i += n
        else:
            tags.append("O")
            i += 1
    return tags


def any_tags(rng, length, bioes):
    prefixes = "BIES" if bioes else "BI"
    return [
        "O" if rng.random() < 0.35 else rng.choice(prefixes) + "-" + rng.choice(TYPES) for _ in range(length)
    ]


def perturb(rng, tags, bioes, rate):
    prefixes = "BIES" if bioes else "BI"
    out = list(tags)
    for i in range(len(out)):
        if rng.random() < rate:
            r = rng.random()
            if r < 0.3:
                out[i] = "O"
            elif r < 0.6 and out[i] != "O":
                out[i] = out[i][0] + "-" + rng.choice(TYPES)  # same prefix, maybe another type
            else:
                out[i] = rng.choice(prefixes) + "-" + rng.choice(TYPES)
    return out


def random_case(rng, index):
    bioes = index % 2 == 1
    sentences = rng.choice([1, 1, 2, 3])
    gold, pred = [], []
    for _ in range(sentences):
        length = rng.randint(0, 9) if rng.random() < 0.1 else rng.randint(1, 9)
        g = well_formed(rng, length, bioes) if rng.random() < 0.7 else any_tags(rng, length, bioes)
        p = perturb(rng, g, bioes, rng.choice([0.0, 0.15, 0.3, 0.6]))
        gold.append(g)
        pred.append(p)
    return case("random_{}_{}".format(index, "bioes" if bioes else "iob2"), gold, pred)


HAND = [
    ("seqeval_doc_example",
     [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
     [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]),
    ("orphan_inside_after_o", [["O", "I-X", "I-X", "O"]], [["O", "B-X", "I-X", "O"]]),
    ("type_change_inside", [["B-X", "I-Y", "I-Y"]], [["B-X", "B-Y", "I-Y"]]),
    ("lone_end", [["E-X"]], [["S-X"]]),
    ("bioes_unterminated", [["B-X", "I-X", "O", "B-Y", "E-Y"]], [["B-X", "E-X", "O", "B-Y", "I-Y"]]),
    ("bioes_end_then_end", [["B-X", "E-X", "E-X", "S-X", "I-X", "E-X"]], [["B-X", "E-X", "O", "S-X", "B-X", "E-X"]]),
    ("begin_after_single", [["S-X", "I-X"], ["I-X", "E-X"]], [["S-X", "E-X"], ["B-X", "E-X"]]),
    ("no_predictions", [["B-X", "I-X", "O"], ["B-Y"]], [["O", "O", "O"], ["O"]]),
    ("no_gold", [["O", "O"]], [["B-X", "O"]]),
    ("no_entities_at_all", [["O", "O"], []], [["O", "O"], []]),
    ("empty_sentences_between", [[], ["B-X"], []], [[], ["B-X"], []]),
    ("entity_at_sentence_end_then_inside",
     [["O", "B-X"], ["I-X", "O"]], [["O", "B-X"], ["B-X", "O"]]),
    ("bare_prefixes", [["B", "I", "O", "S"]], [["B", "O", "O", "S"]]),
    # Bare I/E after O start a chunk by the O rule alone (their type "_" equals O's).
    ("bare_inside_after_outside", [["O", "I", "I", "O", "E"]], [["O", "B", "I", "O", "S"]]),
    ("dashed_types", [["B-X-Y", "I-X-Y", "B-X", "I-X-Y"]], [["B-X-Y", "I-X-Y", "B-X", "B-X-Y"]]),
    ("all_correct_bioes", [["S-A", "B-B", "I-B", "E-B", "O"]], [["S-A", "B-B", "I-B", "E-B", "O"]]),
]


def main():
    rng = random.Random(20240611)
    cases = [case(name, gold, pred) for name, gold, pred in HAND]
    cases += [random_case(rng, i) for i in range(200)]
    out = {
        "generator": "models/reference/make_seqeval_fixtures.py",
        "seqeval_version": getattr(seqeval, "__version__", "1.2.2"),
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    errors = sum(1 for c in cases for m in ("strict_iob2", "strict_bioes") if "error" in c[m])
    print("wrote {} cases ({} strict evaluations refused by seqeval), {} bytes".format(
        len(cases), errors, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
