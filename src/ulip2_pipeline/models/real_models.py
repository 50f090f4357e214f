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


# --- Qwen2.5-VL (Qwen/Qwen2.5-VL-7B-Instruct; the `chat-vlm` captioner family) and the Qwen2 tokenizer ---
# Where the values come from: our knowledge of the public hub files of Qwen/Qwen2.5-VL-7B-Instruct (config.json,
# generation_config.json, preprocessor_config.json, chat_template.json, tokenizer_config.json, tokenizer.json) and
# of Qwen/Qwen2.5-7B-Instruct (tokenizer_config.json's chat template), NOT re-checked against a download here (the
# hub cannot be reached). Surest: the special-token ids, the vocabulary rows (152064), the 7B sizes, mrope_section,
# the vision tower's layout, the image processor's patch/merge/temporal sizes, min/max pixels and CLIP mean/std, the
# chat template. Least sure: the generation config's sampling fields (repetition_penalty, temperature) and
# model_max_length; the caption loop reads none of them (only the end, pad and bos ids).
QWEN2_5_VL_MODEL_ID = "Qwen/Qwen2.5-VL-7B-Instruct"

# The Qwen2 byte-level BPE: 151643 base entries (ids 0 .. 151642, the first 256 the GPT-2 byte alphabet in GPT-2's
# order, so "Ċ" is 198 and "Ġ" 220), 151387 merges, then 22 added tokens. `special` as in tokenizer_config.json's
# added_tokens_decoder: the tool-call and fill-in-the-middle tokens are added but not special.
QWEN2_ADDED_TOKENS = [
    ("<|endoftext|>", 151643, True),
    ("<|im_start|>", 151644, True),
    ("<|im_end|>", 151645, True),
    ("<|object_ref_start|>", 151646, True),
    ("<|object_ref_end|>", 151647, True),
    ("<|box_start|>", 151648, True),
    ("<|box_end|>", 151649, True),
    ("<|quad_start|>", 151650, True),
    ("<|quad_end|>", 151651, True),
    ("<|vision_start|>", 151652, True),
    ("<|vision_end|>", 151653, True),
    ("<|vision_pad|>", 151654, True),
    ("<|image_pad|>", 151655, True),
    ("<|video_pad|>", 151656, True),
    ("<tool_call>", 151657, False),
    ("</tool_call>", 151658, False),
    ("<|fim_prefix|>", 151659, False),
    ("<|fim_middle|>", 151660, False),
    ("<|fim_suffix|>", 151661, False),
    ("<|fim_pad|>", 151662, False),
    ("<|repo_name|>", 151663, False),
    ("<|file_sep|>", 151664, False),
]
QWEN2_TOKENIZER = {
    "tokenizer_class": "Qwen2Tokenizer",
    "base_entries": 151643,  # ids 0 .. 151642
    "merges": 151387,  # one per non-byte entry
    "size": 151665,  # len(tokenizer): base entries + 22 added tokens; the model's 152064 rows pad it
    "newline_id": 198,  # "Ċ"
    "space_id": 220,  # "Ġ"
    "bos_token": None,
    "eos_token": "<|im_end|>",  # the Instruct models'; Qwen2.5 base models name <|endoftext|>
    "pad_token": "<|endoftext|>",
    "unk_token": None,
    "add_bos_token": False,
    "add_prefix_space": False,
    "errors": "replace",
    "split_special_tokens": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 131072,
    # tokenizer_config.json's additional_special_tokens: the special added tokens after <|endoftext|>
    "additional_special_tokens": [token for token, _, special in QWEN2_ADDED_TOKENS[1:] if special],
    # tokenizer.json's pre-tokenizer: this regex (isolated splits), then ByteLevel without its own regex; NFC first
    "pretokenize_regex": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}

# chat_template.json of Qwen/Qwen2.5-VL-7B-Instruct (the same template as Qwen2-VL-Instruct's): a default system
# prompt unless the first message is a system message; images as <|vision_start|><|image_pad|><|vision_end|>.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# tokenizer_config.json's chat_template of the text-only Qwen/Qwen2.5-7B-Instruct (tools and tool calls; its default
# system prompt names Qwen).
QWEN2_5_INSTRUCT_CHAT_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    '    {%- for tool in tools %}\n        {{- "\\n" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n'
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments '
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n{%- else %}\n'
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}\n            {{- tool_call.name }}\n'
    '            {{- \'", "arguments": \' }}\n            {{- tool_call.arguments | tojson }}\n'
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)

# config.json of Qwen/Qwen2.5-VL-7B-Instruct, in the hub's flat layout (the text model's fields at the top level;
# transformers 5.23 builds its text_config from them). vision_config keeps the file's legacy names in_chans and
# spatial_patch_size (5.23 reads in_channels, default 3, and patch_size).
QWEN2_5_VL_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 128000,
    "max_window_layers": 28,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},  # t, h, w: 64 = head_dim 128 / 2
    "vocab_size": 152064,
}

# generation_config.json: captions end at <|im_end|> (or <|endoftext|>). The sampling fields are Qwen's chat
# defaults; the caption loop uses the pipeline's own settings instead (GenerationSettings), as for every family.
QWEN2_5_VL_GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 1e-06,
}

# preprocessor_config.json: dynamic resolution; an image is resized to multiples of 28 (patch 14 x merge 2) with
# min_pixels <= h * w <= max_pixels; every 2 x 2 patches become one <|image_pad|> (224 x 224: 64 tokens).
QWEN2_5_VL_PREPROCESSOR_CONFIG = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_std": OPENAI_CLIP_STD,
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}

# What a Qwen2.5-VL stand-in may change: sizes only. "text" is the top level of the flat config; mrope_section and
# fullatt_block_indexes follow the head dim and the depth; max_pixels (preprocessor) bounds the image tokens.
QWEN2_5_VL_SIZE_KEYS = {
    "text": {
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_window_layers",
    },
    "rope_scaling": {"mrope_section"},
    "vision_config": {
        "depth",
        "hidden_size",
        "intermediate_size",
        "num_heads",
        "out_hidden_size",
        "fullatt_block_indexes",
    },
    "preprocessor": {"max_pixels"},
}

# Text: head dim 16 (real 128), so mrope_section [16, 24, 24] * 8 / 64; 2 KV heads for 4 (real 4 for 28: grouped).
# Vision: 8 blocks with full attention in the last of them (real: the last of every 8 of 32); head dim 16 (real 80).
# max_pixels 112 * 112: a 224 x 224 view becomes 112 x 112, 8 x 8 patches, 16 image tokens.
QWEN2_5_VL_TINY_SIZES = {
    "text": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_window_layers": 2,
    },
    "rope_scaling": {"mrope_section": [2, 3, 3]},
    "vision_config": {
        "depth": 8,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "fullatt_block_indexes": [7],
    },
    "preprocessor": {"max_pixels": 112 * 112},
}


def qwen2_5_vl_config(sizes: Document | None = None) -> dict:
    """The real Qwen2.5-VL-7B-Instruct config.json (flat, as on the hub) with ``sizes`` shrunk in."""
    config = copy.deepcopy(QWEN2_5_VL_CONFIG)
    for block, values in (sizes or {}).items():
        if block == "preprocessor":
            continue
        not_sizes = set(values) - QWEN2_5_VL_SIZE_KEYS.get(block, set())
        if not_sizes:
            raise ValueError(f"a stand-in may only change sizes; {block} {sorted(not_sizes)} are not sizes")
        (config if block == "text" else config[block]).update(values)
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    if sum(config["rope_scaling"]["mrope_section"]) * 2 != head_dim:
        raise ValueError(f"mrope_section must split half the head dim ({head_dim // 2})")
    if config["vision_config"]["out_hidden_size"] != config["hidden_size"]:
        raise ValueError("the vision tower's out_hidden_size must be the language model's hidden_size")
    return config


def qwen2_5_vl_preprocessor_config(sizes: Document | None = None) -> dict:
    """The real preprocessor_config.json with ``sizes['preprocessor']`` (max_pixels) shrunk in."""
    config = copy.deepcopy(QWEN2_5_VL_PREPROCESSOR_CONFIG)
    values = (sizes or {}).get("preprocessor", {})
    not_sizes = set(values) - QWEN2_5_VL_SIZE_KEYS["preprocessor"]
    if not_sizes:
        raise ValueError(f"a stand-in may only change sizes; preprocessor {sorted(not_sizes)} are not sizes")
    config.update(values)
    return config


# --- InstructBLIP (Salesforce/instructblip-vicuna-7b, Salesforce/instructblip-flan-t5-xl) ---
# Where the values come from. From ../shared/REFERENCE.md: the BLIP-2 layout both reuse (EVA ViT-g/14 vision tower,
# patch 14, 224 px; BERT-base Q-Former, cross-attention every 2nd layer; 32 query tokens; BlipImageProcessor,
# bicubic, CLIP mean/std) and the Flan-T5 facts (eos 1, pad and decoder start 0, <image> 32100, 32128 rows, T5
# tokenizer with 100 extra ids). From transformers' own conversion script (convert_instructblip_original_to_pytorch.py,
# read in the transformers repository, not downloaded from the hub): the Q-Former vocabulary is bert-base-uncased's
# 30522 plus "[DEC]" (vocab_size 30523; the Q-Former tokenizer is bert-base-uncased with bos_token "[DEC]" added,
# truncation_side left); the Vicuna text_config is decapoda-research/llama-7b-hf's LlamaConfig with vocab_size 32001;
# the Vicuna tokenizer is huggyllama/llama-7b's LlamaTokenizerFast with bos_token and unk_token set to "</s>"
# (so the prompt starts with </s>, id 2, as LAVIS's InstructBLIP does) and "[PAD]" added (32000); the Flan-T5
# text_config is google/flan-t5-xl's with bos_token_id 1; the image processor is BlipImageProcessor, 224 px, CLIP
# mean/std. transformers' integration test of instructblip-vicuna-7b (generate output starting with 2, then the
# prompt's ids) agrees. From our knowledge of the hub files, NOT verified by a download here: the decapoda LLaMA
# config's token ids bos 0, eos 1, pad -1 and architectures ["LLaMAForCausalLM"] (LAVIS issue #509 quotes the same
# ids; transformers PR #24492 keys a fix on that architecture name); LLaMA-7B's sizes (hidden 4096, ffn 11008,
# 32 layers, 32 heads, rms_norm_eps 1e-6, 2048 positions, untied output embedding); the <image> token added in the
# 2024 processor update at 32001 (Vicuna) / 32100 (Flan-T5), with the Vicuna embedding table grown to 32064 rows
# (len(tokenizer) 32002 padded to a multiple of 64, the recipe that gives blip2-opt's 50304 in REFERENCE.md: the
# 32001 of the conversion could not hold id 32001); processor_config.json {num_query_tokens 32, InstructBlipProcessor};
# a qformer_tokenizer/ subfolder; and the generation configs below. Vicuna's generation_config.json is written as
# Vicuna v1.1's own (bos 1, eos 2 "</s>", pad 0: the ids LAVIS generated with, LAVIS issue #509); if the hub's file
# instead carries the decapoda ids (eos 1), captions would not end at </s>, so instructblip's loader adds the
# tokenizer's </s> to the end tokens, with a warning.
INSTRUCTBLIP_VICUNA_MODEL_ID = "Salesforce/instructblip-vicuna-7b"
INSTRUCTBLIP_T5_MODEL_ID = "Salesforce/instructblip-flan-t5-xl"

_INSTRUCTBLIP_VISION = {  # InstructBlipVisionConfig's defaults: EVA ViT-g/14, as BLIP-2's
    "model_type": "instructblip_vision_model",
    "hidden_size": 1408,
    "intermediate_size": 6144,
    "num_hidden_layers": 39,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "attention_dropout": 0.0,
    "initializer_range": 1e-10,
}
_INSTRUCTBLIP_QFORMER = {  # BERT-base, as BLIP-2's, reading the instruction too: bert-base-uncased + [DEC]
    "model_type": "instructblip_qformer",
    "vocab_size": 30523,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "cross_attention_frequency": 2,
    "encoder_hidden_size": 1408,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "pad_token_id": 0,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
}

INSTRUCTBLIP_VICUNA_CONFIG = {
    "architectures": ["InstructBlipForConditionalGeneration"],
    "model_type": "instructblip",
    "num_query_tokens": 32,
    "image_token_index": 32001,  # <image>, after [PAD] 32000 (not verified)
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
    "vision_config": copy.deepcopy(_INSTRUCTBLIP_VISION),
    "qformer_config": copy.deepcopy(_INSTRUCTBLIP_QFORMER),
    "text_config": {  # decapoda-research/llama-7b-hf's config (the weights are Vicuna-7B v1.1's)
        "architectures": ["LLaMAForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.02,
        "vocab_size": 32064,  # 32001 at conversion; grown for <image> (see above)
        "bos_token_id": 0,  # decapoda's ids, which disagree with the tokenizer (<unk> 0, <s> 1, </s> 2);
        "eos_token_id": 1,  # nothing reads them: generation reads generation_config.json, the prompt the tokenizer
        "pad_token_id": -1,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
    },
}

# generation_config.json: Vicuna v1.1's own ids; captions end at </s> (2), rows padded with <unk> (0)
INSTRUCTBLIP_VICUNA_GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}

INSTRUCTBLIP_T5_CONFIG = {
    "architectures": ["InstructBlipForConditionalGeneration"],
    "model_type": "instructblip",
    "num_query_tokens": 32,
    "image_token_index": 32100,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
    "vision_config": copy.deepcopy(_INSTRUCTBLIP_VISION),
    "qformer_config": copy.deepcopy(_INSTRUCTBLIP_QFORMER),
    "text_config": {**copy.deepcopy(BLIP2_T5_CONFIG["text_config"]), "bos_token_id": 1},  # Flan-T5-XL
}

# generation_config.json (derived from the text config; not verified): decoding starts at <pad> 0, ends at </s> 1
INSTRUCTBLIP_T5_GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 1,
    "decoder_start_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 0,
}

# preprocessor_config.json and processor_config.json (both models)
INSTRUCTBLIP_PREPROCESSOR_CONFIG = {
    **copy.deepcopy(BLIP2_PREPROCESSOR_CONFIG),
    "processor_class": "InstructBlipProcessor",
}
INSTRUCTBLIP_PROCESSOR_CONFIG = {"num_query_tokens": 32, "processor_class": "InstructBlipProcessor"}

# The Vicuna tokenizer: LLaMA's 32000-piece SentencePiece BPE (<unk> 0, <s> 1, </s> 2, byte pieces <0x00>..<0xFF> at
# 3..258, "▁" word starts), bos/eos/unk all "</s>" as converted, then [PAD] and <image> added.
INSTRUCTBLIP_VICUNA_TOKENIZER = {
    "tokenizer_class": "LlamaTokenizer",
    "bos_token": "</s>",
    "eos_token": "</s>",
    "unk_token": "</s>",
    "pad_token": "[PAD]",
    "add_bos_token": True,  # prepends </s> (2)
    "add_eos_token": False,
    "truncation_side": "left",
    "pieces": {"<unk>": 0, "<s>": 1, "</s>": 2},
    "byte_pieces_from": 3,  # <0x00> .. <0xFF> at 3 .. 258
    "space_piece": "\u2581",
    "size_without_added": 32000,
    "pad_token_id": 32000,
    "image_token": "<image>",
    "image_token_id": 32001,
    "size": 32002,  # the model's 32064 rows pad it
}

# The Q-Former tokenizer of both: bert-base-uncased's WordPiece (lower case; [PAD] 0, [UNK] 100, [CLS] 101,
# [SEP] 102, [MASK] 103; 30522 entries) with "[DEC]" added as bos_token (30522); the instruction is encoded
# [CLS] ... [SEP], truncated from the left.
INSTRUCTBLIP_QFORMER_TOKENIZER = {
    "tokenizer_class": "BertTokenizer",
    "special_ids": {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103},
    "unused_ids": (1, 999),  # [unused0] .. [unused993] fill 1..99 and 104..998
    "size_without_added": 30522,
    "bos_token": "[DEC]",
    "bos_token_id": 30522,
    "size": 30523,
    "do_lower_case": True,
    "model_max_length": 512,
    "truncation_side": "left",
}

# What an InstructBLIP stand-in may change: BLIP-2's sizes and LLaMA's names for them.
INSTRUCTBLIP_SIZE_KEYS = {
    **copy.deepcopy(SIZE_KEYS),
    "text_config": SIZE_KEYS["text_config"] | {"intermediate_size", "num_key_value_heads"},
}

INSTRUCTBLIP_VICUNA_TINY_SIZES = {
    "vision_config": copy.deepcopy(BLIP2_TINY_SIZES["vision_config"]),
    "qformer_config": copy.deepcopy(BLIP2_TINY_SIZES["qformer_config"]),
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
}
INSTRUCTBLIP_T5_TINY_SIZES = copy.deepcopy(BLIP2_T5_TINY_SIZES)

INSTRUCTBLIP_CONFIGS = {"vicuna": INSTRUCTBLIP_VICUNA_CONFIG, "t5": INSTRUCTBLIP_T5_CONFIG}
INSTRUCTBLIP_TINY_SIZES = {"vicuna": INSTRUCTBLIP_VICUNA_TINY_SIZES, "t5": INSTRUCTBLIP_T5_TINY_SIZES}


def instructblip_config(language_model: str, sizes: Document | None = None) -> dict:
    """The real InstructBLIP config.json (``language_model`` "vicuna": Vicuna-7B, "t5": Flan-T5-XL) as a dict, with
    ``sizes`` (per sub-config) shrunk in."""
    if language_model not in INSTRUCTBLIP_CONFIGS:
        raise ValueError(
            f"InstructBLIP language model must be one of {sorted(INSTRUCTBLIP_CONFIGS)}, not {language_model!r}"
        )
    config = copy.deepcopy(INSTRUCTBLIP_CONFIGS[language_model])
    for block, values in (sizes or {}).items():
        not_sizes = set(values) - INSTRUCTBLIP_SIZE_KEYS.get(block, set())
        if not_sizes:
            raise ValueError(f"a stand-in may only change sizes; {block} {sorted(not_sizes)} are not sizes")
        config[block].update(values)
    return config


# --- Qwen2.5-7B-Instruct (Qwen/Qwen2.5-7B-Instruct): the fuse stage's LLM (one object caption from its views') ---
# From our knowledge of the public hub files config.json and generation_config.json of Qwen/Qwen2.5-7B-Instruct,
# NOT re-checked against a download here (the hub cannot be reached). Its tokenizer is Qwen2's
# (QWEN2_TOKENIZER above) with QWEN2_5_INSTRUCT_CHAT_TEMPLATE. The fuse stage reads only the end, pad and bos ids of
# the generation config; its sampling fields (temperature, top_p, top_k, repetition_penalty) are Qwen's chat
# defaults, recorded here as facts: the stage samples with its own settings (fuse: in the configuration).
QWEN2_5_INSTRUCT_MODEL_ID = "Qwen/Qwen2.5-7B-Instruct"

QWEN2_5_INSTRUCT_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
}

QWEN2_5_INSTRUCT_GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
}

# What a Qwen2 stand-in may change: sizes only (head dim 16 instead of 128; 2 KV heads for 4, grouped as 4 for 28).
QWEN2_SIZE_KEYS = {
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_window_layers",
}
QWEN2_5_INSTRUCT_TINY_SIZES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_window_layers": 2,
}


def qwen2_5_instruct_config(sizes: Document | None = None) -> dict:
    """The real Qwen2.5-7B-Instruct config.json as a dict, with ``sizes`` (top-level keys) shrunk in."""
    config = copy.deepcopy(QWEN2_5_INSTRUCT_CONFIG)
    not_sizes = set(sizes or {}) - QWEN2_SIZE_KEYS
    if not_sizes:
        raise ValueError(f"a stand-in may only change sizes; {sorted(not_sizes)} are not sizes")
    config.update(sizes or {})
    return config
