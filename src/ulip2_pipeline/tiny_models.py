"""Tiny, randomly initialised models of the real architectures, built offline.

The demo and the tests cannot download weights, so a rule builds a small BLIP-2
(ViT + Q-Former + OPT, with a BPE tokenizer trained here on generated text) and a
small OpenCLIP model, saves them, and the stages load them by path through the
same code that loads ``Salesforce/blip2-opt-6.7b`` and ``ViT-L-14``/``openai``.
Their outputs are noise; only the plumbing is real.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

TINY_CLIP_NAME = "ulip2-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

_WORDS = ("a an the of with on in and small large red green blue yellow white black grey wooden metal "
          "plastic round square tall short mug table bottle crate ball cone chair lamp cup box object "
          "model render 3d shape picture photo view toy simple").split()


def _training_text() -> list[str]:
    """A deterministic corpus of caption-like sentences to train the BPE merges on."""
    sentences = []
    for first, second, third in itertools.islice(itertools.product(_WORDS, repeat=3), 0, 20000, 7):
        sentences.append(f"a {first} {second} {third}")
    return sentences


def build_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    # OPT's conventions: </s> begins and ends sequences, <pad> pads.
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="</s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def build_tiny_blip2(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny Blip2ForConditionalGeneration and its Blip2Processor to ``out_dir``."""
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor,
                              OPTConfig)

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    num_query_tokens = 8
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 224, "width": 224}),
                               tokenizer=tokenizer, num_query_tokens=num_query_tokens)
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    text_config = OPTConfig(vocab_size=len(processor.tokenizer), hidden_size=64, num_hidden_layers=2, ffn_dim=128,
                            num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=256,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    config = Blip2Config(
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 224, "patch_size": 32},
        qformer_config={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "intermediate_size": 128, "encoder_hidden_size": 64, "cross_attention_frequency": 1},
        text_config=text_config.to_dict(), num_query_tokens=num_query_tokens, image_token_index=image_token_id)
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_clip(out_dir: str | Path, seed: int = 0) -> dict:
    """Save a tiny OpenCLIP model: its architecture JSON and a checkpoint file."""
    import open_clip

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / f"{TINY_CLIP_NAME}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    weights = out_dir / "open_clip_model.pt"
    torch.save(model.state_dict(), weights)
    return {"arch": TINY_CLIP_NAME, "pretrained": str(weights), "arch_config": str(config_path)}
