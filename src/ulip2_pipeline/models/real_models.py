"""The paper's checkpoints as facts: their configuration files, transcribed, not downloaded.

One home for what the real models look like, so that the tiny stand-ins the demo
and tests build (``tiny_models``) and the full-size benchmark
(``benchmarks/caption_rank_bench.py --real-size``) are made from the same
configuration; a stand-in may only shrink sizes (``SIZE_KEYS``). The values come
from the public hub files of ``Salesforce/blip2-opt-6.7b`` (config.json,
generation_config.json, preprocessor_config.json, processor_config.json,
tokenizer_config.json) and from open_clip 3.3's own registry; where the hub file
leaves a field to the library's default (the vision and Q-Former blocks, OPT's
bos/pad ids), the transformers 5.23 default is written out here so that it is
visible and can be shrunk.
"""

from __future__ import annotations

import copy

from ulip2_pipeline.records import Document

BLIP2_MODEL_ID = "Salesforce/blip2-opt-6.7b"

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# config.json of Salesforce/blip2-opt-6.7b (library defaults written out where the file relies on them).
BLIP2_CONFIG = {
    "architectures": ["Blip2ForConditionalGeneration"],
    "model_type": "blip-2",
    "image_text_hidden_size": 256,
    "image_token_index": 50265,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "num_query_tokens": 32,
    "use_decoder_only_language_model": True,
    "torch_dtype": "float32",
    "vision_config": {  # EVA ViT-g/14: all transformers defaults
        "model_type": "blip_2_vision_model",
        "hidden_size": 1408,
        "intermediate_size": 6144,
        "num_hidden_layers": 39,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "num_channels": 3,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "initializer_factor": 1.0,
        "projection_dim": 512,
    },
    "qformer_config": {  # BERT-base Q-Former: transformers defaults
        "model_type": "blip_2_qformer",
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "cross_attention_frequency": 2,
        "encoder_hidden_size": 1408,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "vocab_size": 30522,
        "pad_token_id": 0,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
    },
    "text_config": {  # OPT-6.7B
        "_name_or_path": "facebook/opt-6.7b",
        "architectures": ["OPTForCausalLM"],
        "model_type": "opt",
        "hidden_size": 4096,
        "ffn_dim": 16384,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "word_embed_proj_dim": 4096,
        "max_position_embeddings": 2048,
        "vocab_size": 50304,
        "do_layer_norm_before": True,
        "activation_function": "relu",
        "activation_dropout": 0.0,
        "bos_token_id": 2,
        "pad_token_id": 1,
        "eos_token_id": 50118,  # the newline: BLIP-2 captions end with "\n", not </s>
        "prefix": "</s>",
        "tie_word_embeddings": True,
        "torch_dtype": "float16",
    },
}

# generation_config.json
BLIP2_GENERATION_CONFIG = {"_from_model_config": True, "bos_token_id": 2, "eos_token_id": 50118, "pad_token_id": 1}

# preprocessor_config.json
BLIP2_PREPROCESSOR_CONFIG = {
    "image_processor_type": "BlipImageProcessor",
    "processor_class": "Blip2Processor",
    "do_convert_rgb": True,
    "do_resize": True,
    "size": {"height": 224, "width": 224},
    "resample": 3,  # PIL bicubic
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_std": OPENAI_CLIP_STD,
}

# processor_config.json
BLIP2_PROCESSOR_CONFIG = {"num_query_tokens": 32, "processor_class": "Blip2Processor"}

# The tokenizer: OPT's byte-level BPE (GPT-2's merges, fairseq's id order) plus BLIP-2's <image>.
BLIP2_TOKENIZER = {
    "tokenizer_class": "GPT2Tokenizer",
    "add_bos_token": True,  # prepends </s>
    "add_prefix_space": False,
    "errors": "replace",
    "bos_token": "</s>",
    "eos_token": "</s>",
    "unk_token": "</s>",
    "pad_token": "<pad>",
    "special_ids": {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3},
    "newline_token": "\u010a",  # "Ċ", the byte-level form of "\n"
    "newline_id": 50118,
    "image_token": "<image>",
    "image_token_id": 50265,
    "size": 50266,  # 50265 BPE entries + <image>; the model's 50304 rows pad it
}

# open_clip: the rank model (ULIP-2 used CLIP ViT-L/14, OpenAI's weights) and the frozen towers for training.
CLIP_RANK = {"arch": "ViT-L-14", "pretrained": "openai", "quick_gelu": True, "embed_dim": 768}
CLIP_EMBED = {"arch": "ViT-bigG-14", "pretrained": "laion2b_s39b_b160k", "quick_gelu": False, "embed_dim": 1280}
# Preprocessing shared by both tags (open_clip's _pcfg): resize the shortest side, centre crop.
CLIP_PREPROCESS = {
    "size": 224,
    "mean": tuple(OPENAI_CLIP_MEAN),
    "std": tuple(OPENAI_CLIP_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}

# What a stand-in may change: sizes only.
SIZE_KEYS = {
    "vision_config": {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"},
    "qformer_config": {
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "encoder_hidden_size",
    },
    "text_config": {"hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads", "word_embed_proj_dim"},
    "clip": {"embed_dim", "width", "layers", "heads", "head_width"},
}

BLIP2_TINY_SIZES = {
    "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4},
    "qformer_config": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "encoder_hidden_size": 64,
    },
    "text_config": {
        "hidden_size": 64,
        "ffn_dim": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "word_embed_proj_dim": 64,
    },
}

CLIP_TINY_SIZES = {
    "embed_dim": 32,
    "vision_cfg": {"width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"width": 64, "heads": 2, "layers": 2},
}


def blip2_config(sizes: Document | None = None) -> dict:
    """The real BLIP-2 OPT-6.7B config.json as a dict, with ``sizes`` (per sub-config) shrunk in."""
    config = copy.deepcopy(BLIP2_CONFIG)
    for block, values in (sizes or {}).items():
        not_sizes = set(values) - SIZE_KEYS.get(block, set())
        if not_sizes:
            raise ValueError(f"a stand-in may only change sizes; {block} {sorted(not_sizes)} are not sizes")
        config[block].update(values)
    return config


def clip_arch_config(clip: Document, sizes: Document | None = None) -> dict:
    """open_clip's own architecture JSON of ``clip['arch']``, with the activation its weights were
    trained with made explicit (``quick_gelu``), and ``sizes`` shrunk in."""
    import open_clip

    config = copy.deepcopy(open_clip.get_model_config(clip["arch"]))
    if config is None:
        raise ValueError(f"open_clip has no architecture {clip['arch']!r}")
    if clip["quick_gelu"]:
        config["quick_gelu"] = True
    for key, value in (sizes or {}).items():
        if isinstance(value, dict):
            not_sizes = set(value) - SIZE_KEYS["clip"]
            if not_sizes:
                raise ValueError(f"a stand-in may only change sizes; {key} {sorted(not_sizes)} are not sizes")
            config[key].update(value)
        elif key in SIZE_KEYS["clip"]:
            config[key] = value
        else:
            raise ValueError(f"a stand-in may only change sizes; {key!r} is not a size")
    return config
