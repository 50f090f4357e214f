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
visible and can be shrunk. ``Salesforce/blip2-flan-t5-xl`` (Cap3D's captioner) is
transcribed the same way further down; its sources are noted there.
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

# --- BLIP-2 Flan-T5 (Salesforce/blip2-flan-t5-xl; -xxl differs only in the T5 sizes) ---
# Where the values come from. From ../shared/REFERENCE.md ("Real checkpoints"): use_decoder_only_language_model
# false; a T5 encoder-decoder text model without bos_token_id; eos_token_id 1 (</s>); pad_token_id and
# decoder_start_token_id 0; image_token_index 32100; 32128 vocabulary rows; a SentencePiece T5 tokenizer with
# 100 extra ids; the query embeddings go to the encoder and decoding starts from the pad token. From our
# knowledge of the hub files (Salesforce/blip2-flan-t5-xl config.json, generation_config.json,
# processor_config.json, tokenizer_config.json, and google/flan-t5-xl's config.json, which its text_config
# copies), not re-checked against a download here: the Flan-T5-XL sizes (d_model 2048, d_kv 64, d_ff 5120,
# 24 + 24 layers, 32 heads; -xxl: 4096 / 64 / 10240 / 24 + 24 / 64), feed_forward_proj "gated-gelu",
# tie_word_embeddings false (T5 v1.1 keeps its own output embedding and does not rescale before it),
# relative attention 32 buckets / max distance 128, layer_norm_epsilon 1e-6, dropout 0.1, n_positions 512,
# num_query_tokens 32, the generation config (decoder_start 0, eos 1, pad 0), the tokenizer's special-token
# layout (<pad> 0, </s> 1, <unk> 2, "▁" 3, 32000 pieces, <extra_id_0> .. <extra_id_99> at 32099 down to 32000,
# <image> 32100 added, model_max_length 512), and that the vision tower, Q-Former and image processor are
# the same as BLIP-2 OPT's.
BLIP2_T5_MODEL_ID = "Salesforce/blip2-flan-t5-xl"

BLIP2_T5_CONFIG = {
    "architectures": ["Blip2ForConditionalGeneration"],
    "model_type": "blip-2",
    "image_text_hidden_size": 256,
    "image_token_index": 32100,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "num_query_tokens": 32,
    "use_decoder_only_language_model": False,
    "torch_dtype": "float32",
    "vision_config": copy.deepcopy(BLIP2_CONFIG["vision_config"]),
    "qformer_config": copy.deepcopy(BLIP2_CONFIG["qformer_config"]),
    "text_config": {  # Flan-T5-XL
        "_name_or_path": "google/flan-t5-xl",
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "d_model": 2048,
        "d_kv": 64,
        "d_ff": 5120,
        "num_layers": 24,
        "num_decoder_layers": 24,
        "num_heads": 32,
        "feed_forward_proj": "gated-gelu",
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "layer_norm_epsilon": 1e-6,
        "dropout_rate": 0.1,
        "initializer_factor": 1.0,
        "n_positions": 512,
        "is_encoder_decoder": True,
        "vocab_size": 32128,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    },
}

# generation_config.json: no bos; captions end at </s>
BLIP2_T5_GENERATION_CONFIG = {
    "_from_model_config": True,
    "decoder_start_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 0,
}

# preprocessor_config.json and processor_config.json: the same files as BLIP-2 OPT's
BLIP2_T5_PREPROCESSOR_CONFIG = copy.deepcopy(BLIP2_PREPROCESSOR_CONFIG)
BLIP2_T5_PROCESSOR_CONFIG = {"num_query_tokens": 32, "processor_class": "Blip2Processor"}

# The tokenizer: T5's SentencePiece unigram vocabulary (no BOS; </s> appended to every text), 100 sentinels
# numbered downwards from the top, then BLIP-2's <image>.
BLIP2_T5_TOKENIZER = {
    "tokenizer_class": "T5Tokenizer",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "special_ids": {"<pad>": 0, "</s>": 1, "<unk>": 2},
    "space_piece": "\u2581",  # "▁", SentencePiece's word boundary; id 3 in T5's vocabulary
    "pieces": 32000,  # ids 0 .. 31999
    "extra_ids": 100,  # <extra_id_0> is 32099, <extra_id_99> is 32000
    "image_token": "<image>",
    "image_token_id": 32100,
    "size": 32101,  # the model's 32128 rows pad it
    "model_max_length": 512,
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
    "text_config": {
        "hidden_size",
        "ffn_dim",
        "num_hidden_layers",
        "num_attention_heads",
        "word_embed_proj_dim",
        # T5's names for the same sizes
        "d_model",
        "d_kv",
        "d_ff",
        "num_layers",
        "num_decoder_layers",
        "num_heads",
    },
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

# The same vision tower and Q-Former as the OPT stand-in; a T5 of the same width.
BLIP2_T5_TINY_SIZES = {
    "vision_config": copy.deepcopy(BLIP2_TINY_SIZES["vision_config"]),
    "qformer_config": copy.deepcopy(BLIP2_TINY_SIZES["qformer_config"]),
    "text_config": {"d_model": 64, "d_kv": 16, "d_ff": 256, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4},
}

CLIP_TINY_SIZES = {
    "embed_dim": 32,
    "vision_cfg": {"width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"width": 64, "heads": 2, "layers": 2},
}


def blip2_config(sizes: Document | None = None) -> dict:
    """The real BLIP-2 OPT-6.7B config.json as a dict, with ``sizes`` (per sub-config) shrunk in."""
    return _shrunk(BLIP2_CONFIG, sizes)


def blip2_t5_config(sizes: Document | None = None) -> dict:
    """The real BLIP-2 Flan-T5-XL config.json as a dict, with ``sizes`` (per sub-config) shrunk in."""
    return _shrunk(BLIP2_T5_CONFIG, sizes)


def _shrunk(real: Document, sizes: Document | None) -> dict:
    config = copy.deepcopy(real)
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
