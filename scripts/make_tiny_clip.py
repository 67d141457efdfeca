#!/usr/bin/env python3
"""A tiny Hugging Face CLIPModel and its outputs, for the CLIP tower tests.

Writes plugins/multimodal/tests/fixtures/tiny-clip/:

- config.json, model.safetensors: transformers' CLIPModel.save_pretrained of
  a seeded tiny model (text: vocabulary 64, width 32, MLP 64, 2 layers,
  4 heads, 16 positions; vision: width 32, MLP 64, 2 layers, 4 heads,
  16 px images in 8 px patches, 3 channels; projection 24; quick GELU).
  Layer norms and biases get random non-trivial values, and the query and
  key projections are scaled up so that attention is far from uniform.
- reference.json: the inputs and PyTorch's outputs:
  input_ids [2, 8] and attention_mask [2, 8] (row 0 full, ending in the
  end-of-text token 63, the largest id; row 1 shorter, its end-of-text
  token at its last unmasked position and padding after it), images
  [2, 3, 16, 16] in [0, 1] (normalised here with CLIP's mean and std before
  the model sees them, since the Rust tower normalises itself), the text
  and vision pooler outputs, the projected (not normalised) text and image
  embeddings, logits_per_image and logit_scale. Floats are plain lists.
- tokenizer.json: a word-level tokenizer over the model's 64 ids (0 <pad>,
  1 <unk>, 2-61 words, 62 start and 63 end of text, added around every
  caption), so that recipes can train the tiny model end to end with its
  own tokenizer (tests/tests/clip.rs).

The Rust test plugins/multimodal/tests/clip_towers.rs checks the towers
against it. Needs torch and transformers (5.x):

    python scripts/make_tiny_clip.py [OUT_DIR]
"""
import json
import os
import sys

import torch
from transformers import CLIPConfig, CLIPModel

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
EOS = 63
SEED = 20240601


def tolist(t):
    return t.detach().to(torch.float64).tolist()


WORDS = (
    "a an the of on in with and photo picture image drawing small big dark "
    "bright red green blue yellow white black square circle triangle cross "
    "stripes dots plain shape colour color this is that one two thing object "
    "background close-up blurry low resolution centered tiny large pattern "
    "toy card tile icon sign mark spot patch . ,"
).split()


def write_tokenizer(out: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "<unk>": 1}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    assert len(vocab) <= 62, len(vocab)
    vocab["<|startoftext|>"] = 62
    vocab["<|endoftext|>"] = EOS
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 62), ("<|endoftext|>", EOS)],
    )
    tok.enable_padding(pad_id=0, pad_token="<pad>")
    tok.save(os.path.join(out, "tokenizer.json"))


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "plugins", "multimodal", "tests", "fixtures", "tiny-clip")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(SEED)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            hidden_act="quick_gelu",
            bos_token_id=62,
            eos_token_id=EOS,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=16,
            patch_size=8,
            num_channels=3,
            hidden_act="quick_gelu",
        ),
        projection_dim=24,
    )
    config._attn_implementation = "eager"
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(3.0)
        model.logit_scale.fill_(2.3)
    model.save_pretrained(out)  # safetensors (the only format in transformers 5)
    os.chmod(os.path.join(out, "model.safetensors"), 0o644)

    input_ids = torch.tensor([
        [62, 5, 17, 33, 9, 41, 2, EOS],
        [62, 12, 7, 50, EOS, 0, 0, 0],
    ])
    attention_mask = torch.tensor([
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 0, 0, 0],
    ])
    images = torch.rand(2, 3, 16, 16)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    pixel_values = (images - mean) / std
    with torch.no_grad():
        text = model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        vision = model.vision_model(pixel_values=pixel_values)
        text_embeds = model.text_projection(text.pooler_output)
        image_embeds = model.visual_projection(vision.pooler_output)
        full = model(input_ids=input_ids, attention_mask=attention_mask,
                     pixel_values=pixel_values)
    ref = {
        "input_ids": input_ids.tolist(),
        "attention_mask": attention_mask.tolist(),
        "images": tolist(images),
        "text_pooler_output": tolist(text.pooler_output),
        "vision_pooler_output": tolist(vision.pooler_output),
        "text_embeds": tolist(text_embeds),
        "image_embeds": tolist(image_embeds),
        "logits_per_image": tolist(full.logits_per_image),
        "logit_scale": float(model.logit_scale.item()),
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    write_tokenizer(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
