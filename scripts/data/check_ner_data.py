#!/usr/bin/env python3
"""Checks a token-classification data folder written by synthetic_phi.py or hpo_mentions.py.

  python3 scripts/data/check_ner_data.py DIR [--labels NAME,DATE,...]

For each DIR/{train,val,test}.jsonl that exists (one {"id", "text", "entities": [{"start", "end",
"label", ...}]} a line; start/end character offsets, end exclusive) it asserts: ids unique, every
span in range, sorted and non-overlapping, its text non-empty and not starting or ending with
whitespace, on a character boundary (never between a letter and its combining mark) and on a token
boundary of the CoNLL tokenisation (\\w+|[^\\w\\s]), its label known (--labels, else any upper-case
name). Where DIR/<split>.conll exists too, it asserts that every line is "token<TAB>tag" with an
IOB2 tag (no I- without a B- or I- of the same label before it), and that its tokens and tags
equal, in order, those the JSONL spans give (blank sentence lines aside). Prints counts; exits
non-zero on the first failure. Also used by `synthetic_phi.py --check` and `hpo_mentions.py --check`.
"""
import argparse, json, os, re, sys, unicodedata

TOKEN = re.compile(r"\w+|[^\w\s]")
SPLITS = ("train", "val", "test")


def check_note(note, labels=None):
    """Asserts the span invariants of one JSONL record; returns its (token, IOB2 tag) list."""
    text, prev_end = note["text"], 0
    assert isinstance(note.get("id"), str) and isinstance(text, str) and isinstance(note["entities"], list), note
    token_starts, token_ends = set(), set()
    for m in TOKEN.finditer(text):
        token_starts.add(m.start())
        token_ends.add(m.end())
    tags = ["O"] * len(text)
    for e in note["entities"]:
        s, t, label = e["start"], e["end"], e["label"]
        assert isinstance(s, int) and isinstance(t, int) and 0 <= s < t <= len(text), (note["id"], e)
        assert s >= prev_end, ("overlapping or unsorted spans", note["id"], e)
        prev_end = t
        span = text[s:t]
        assert span.strip() and span == span.strip(), ("empty or whitespace-padded span", note["id"], span)
        assert (label in labels) if labels else re.fullmatch(r"[A-Z][A-Z_]*", label), ("unknown label", note["id"], e)
        assert not unicodedata.combining(text[s]) and (t == len(text) or not unicodedata.combining(text[t])), \
            ("span splits a character", note["id"], span)
        assert s in token_starts and t in token_ends, ("span not on a token boundary", note["id"], span)
        tags[s] = "B-" + label
        for i in range(s + 1, t):
            tags[i] = "I-" + label
    return [(m.group(0), tags[m.start()]) for m in TOKEN.finditer(text)]


def check_conll(path, expected, labels=None):
    rows, prev = [], "O"
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                prev = "O"
                continue
            cols = line.split("\t")
            assert len(cols) == 2 and cols[0] and not any(c.isspace() for c in cols[0]), (path, number, line)
            tag = cols[1]
            assert tag == "O" or tag[:2] in ("B-", "I-") and ((tag[2:] in labels) if labels else tag[2:]), \
                (path, number, line)
            assert not tag.startswith("I-") or prev[2:] == tag[2:], ("I- without B-", path, number, line)
            rows.append((cols[0], tag))
            prev = tag
    assert len(rows) == len(expected), ("token count differs from the JSONL", path, len(rows), len(expected))
    for k, (got, want) in enumerate(zip(rows, expected)):
        assert got == want, ("token/tag differs from the JSONL", path, k, got, want)
    return len(rows)


def check_dir(out_dir, labels=None, quiet=False):
    found = 0
    ids = set()
    for split in SPLITS:
        path = os.path.join(out_dir, f"{split}.jsonl")
        if not os.path.exists(path):
            continue
        found += 1
        expected, counts, notes = [], {}, 0
        with open(path, encoding="utf-8") as f:
            for line in f:
                note = json.loads(line)
                assert note["id"] not in ids, ("duplicate id", note["id"])
                ids.add(note["id"])
                expected.extend(check_note(note, labels))
                for e in note["entities"]:
                    counts[e["label"]] = counts.get(e["label"], 0) + 1
                notes += 1
        msg = f"{path}: {notes} docs, {sum(counts.values())} spans " + str(dict(sorted(counts.items())))
        conll = os.path.join(out_dir, f"{split}.conll")
        if os.path.exists(conll):
            msg += f"; {conll}: {check_conll(conll, expected, labels)} tokens match"
        if not quiet:
            print("ok", msg)
    assert found, f"no {{train,val,test}}.jsonl in {out_dir}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="check a token-classification data folder")
    parser.add_argument("dir")
    parser.add_argument("--labels", help="comma-separated label set (default: any upper-case label)")
    options = parser.parse_args()
    check_dir(options.dir, set(options.labels.split(",")) if options.labels else None)
    sys.exit(0)
