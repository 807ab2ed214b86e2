"""Writes the bench inputs: texts that the MiniLM tokenizer turns into exactly 22, 128 and 512
tokens ([CLS] and [SEP] counted), and eight different 128-token texts for the batch case, so no
batch is padded and both runtimes do exactly the same work.

    python make_texts.py MODEL_DIR OUT_JSON

Each text is a run of consecutive words of the note below (wrapping around), grown word by word;
a word that would overshoot is replaced by a one-token word, "with", until the count is exact.
"""
import json
import sys

from tokenizers import Tokenizer

NOTE = """Discharge summary. Sixty-four year old man admitted through the emergency department with
fever, productive cough and right-sided pleuritic chest pain for four days. He has chronic obstructive
pulmonary disease on tiotropium and as-needed albuterol, hypertension treated with amlodipine and
lisinopril, and a remote history of smoking, forty pack-years, quit in two thousand and twelve. On
arrival temperature was thirty-nine point one degrees, heart rate one hundred and twelve, respiratory
rate twenty-six, blood pressure one hundred and four over sixty-two and oxygen saturation eighty-eight
percent on room air, improving to ninety-four percent on two liters by nasal cannula. Examination
showed bronchial breath sounds and crackles at the right base with dullness to percussion. White cell
count was eighteen thousand with a left shift, lactate two point four, procalcitonin elevated, and
creatinine one point six from a baseline of one point one. Chest radiograph demonstrated right lower
lobe consolidation with a small parapneumonic effusion. Blood cultures grew Streptococcus pneumoniae
sensitive to ceftriaxone; urinary pneumococcal antigen was positive. He received thirty milliliters per
kilogram of crystalloid, ceftriaxone and azithromycin within the first hour, and his blood pressure and
lactate normalized by the following morning. Ultrasound of the effusion showed a simple free-flowing
collection that was not tapped. Kidney function recovered with fluids and holding lisinopril. Oxygen was
weaned to room air on day four. He completed five days of intravenous therapy and was switched to oral
amoxicillin to finish a seven day course. Inhaler technique was reviewed, he received pneumococcal and
influenza vaccinations, and pulmonary rehabilitation was arranged. Follow-up chest radiograph in six to
eight weeks to document resolution and exclude an underlying lesion. Return precautions for worsening
breathlessness, chest pain or recurrent fever were explained to the patient and his wife, who both
voiced understanding and agreement with the plan."""


def main(model_dir, out_path):
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.no_truncation()
    words = NOTE.split()

    def count(ws):
        return len(tok.encode(" ".join(ws)).ids)

    def cut(start, target):
        taken, i = [], start
        while count(taken) < target:
            if i - start > 20 * len(words):
                raise SystemExit(f"cannot reach {target} tokens")
            word = words[i % len(words)]
            i += 1
            for candidate in (word, "with"):
                if count(taken + [candidate]) <= target:
                    taken.append(candidate)
                    break
        return " ".join(taken)

    texts = {"short_22": cut(150, 22), "t128": cut(0, 128),
             "batch8_128": [cut(s, 128) for s in range(0, 8 * 41, 41)], "t512": cut(0, 512)}
    counts = {k: ([count(t.split()) for t in v] if isinstance(v, list) else count(v.split())) for k, v in texts.items()}
    assert counts == {"short_22": 22, "t128": 128, "batch8_128": [128] * 8, "t512": 512}, counts
    json.dump({"token_counts": counts, **texts}, open(out_path, "w"), indent=1)
    print("texts:", counts)


if __name__ == "__main__":
    main(*sys.argv[1:3])
