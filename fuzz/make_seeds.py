#!/usr/bin/env python3
"""Writes the fuzz seeds in fuzz/seeds/ that need no Bedside build: tokenizer.json inputs,
search indexes (the BSIX layout of wasm/src/search/index.rs) and tables. The bundle seed is
made by `bedside export` (see fuzz/README.md). Synthetic text only. Deterministic."""
import hashlib
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent
SEEDS = ROOT / "seeds"


def write(target, name, data):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# tokenizer_json: the fixture's tokenizer.json, alone and followed by NUL + a text.
tok = (ROOT.parent / "models/fixtures/tiny-classifier/tokenizer.json").read_bytes()
write("tokenizer_json", "tiny-classifier.json", tok)
write("tokenizer_json", "tiny-classifier-text.bin", tok + b"\0chest pain, SpO2 91%; BP 140/90 \xc3\xa9t\xc3\xa9 \xe2\x80\x94 ok")
minimal = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [],
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                   "strip_accents": None, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": None,
    "decoder": None,
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100,
              "vocab": {t: i for i, t in enumerate(
                  ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "chest", "pain", "##s", "bp", ",", "."])}},
}
write("tokenizer_json", "minimal-wordpiece.bin", json.dumps(minimal).encode() + b"\0chest pains, bp.")


# search_index: valid files (checksum included) and bodies (the target appends the checksum).
def index_body(storage, dim, docs):
    out = b"BSIX" + struct.pack("<I", 1) + bytes([storage, 0, 0, 0]) + struct.pack("<II", dim, len(docs))
    for doc_id, _ in docs:
        out += struct.pack("<I", len(doc_id.encode())) + doc_id.encode()
    if storage == 0:
        for _, vector in docs:
            out += struct.pack(f"<{dim}f", *vector)
    else:
        codes = b""
        for _, vector in docs:
            scale = max(abs(x) for x in vector) / 127 or 0.0
            out += struct.pack("<f", scale)
            codes += bytes((round(x / scale) if scale else 0) & 0xFF for x in vector)
        out += codes
    return out


docs = [("n1", [0.6, 0.8, 0.0, 0.0]), ("note-2", [0.0, 0.0, 1.0, 0.0]), ("n3.txt", [0.5, 0.5, 0.5, 0.5])]
for storage, name in [(0, "f32"), (1, "int8")]:
    body = index_body(storage, 4, docs)
    write("search_index", f"{name}.bsix", body + hashlib.sha256(body).digest())
    write("search_index", f"{name}-body.bin", body)
empty = index_body(0, 8, [])
write("search_index", "empty.bsix", empty + hashlib.sha256(empty).digest())
write("search_index", "empty-body.bin", empty)

# tables: a selector byte (format = byte % 3: csv, tsv, jsonl; reader = byte / 3 % 6), then
# the table. Readers: 0 labelled notes, 1 labelled notes with id/group/"|", 2 pairs,
# 3 triplets, 4 documents, 5 qrels (against queries q1 q2 and documents d1 d2 1).
tables = {
    0: [{"text": "Crushing chest pain; troponin up.", "label": "cardiac"},
        {"text": "Wheeze, cough, SpO2 91%", "label": "pulm"}],
    1: [{"id": "n1", "text": "Chest pain, \"crushing\"", "label": "cardiac|acute", "group": "I21"},
        {"id": "n2", "text": "HbA1c 9.4%\nplan: insulin", "label": "endo", "group": "E11"}],
    2: [{"text1": "chest pain", "text2": "angina", "label": 1},
        {"text1": "rash", "text2": "fracture", "label": "0.25"}],
    3: [{"anchor": "MI", "positive": "myocardial infarction", "negative": "migraine"}],
    4: [{"id": "d1", "text": "Type 2 diabetes"}, {"id": "d2", "text": "Hypertension, essential"}],
    5: [{"query_id": "q1", "doc_id": "d1", "score": 2}, {"query_id": "q2", "doc_id": "1", "score": "0"}],
}


def delimited(rows, sep):
    cols = list(rows[0])

    def cell(v):
        v = str(v)
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in (sep, '"', "\n")) else v

    return "".join(sep.join(cell(r[c]) for c in cols) + "\n" for r in [dict(zip(cols, cols))] + rows).encode()


for reader, rows in tables.items():
    write("tables", f"r{reader}.csv", bytes([reader * 3 + 0]) + delimited(rows, ","))
    write("tables", f"r{reader}.tsv", bytes([reader * 3 + 1]) + delimited(rows, "\t"))
    write("tables", f"r{reader}.jsonl", bytes([reader * 3 + 2]) + "".join(json.dumps(r) + "\n" for r in rows).encode())
