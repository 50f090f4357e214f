"""An offline BPE vocabulary laid out like LLaMA's as InstructBLIP Vicuna's tokenizer has it, saved as the hub's
tokenizer files without the sentencepiece package or a download.

LLaMA's real vocabulary is a 32000-piece SentencePiece BPE model; it cannot be downloaded
here. What the caption code depends on is its layout, and that is kept: ``<unk> <s> </s>`` at
ids 0-2, the byte pieces ``<0x00>`` .. ``<0xFF>`` at 3-258 (byte fallback), word starts marked
with ``▁`` (transformers 5's ``LlamaTokenizer``: Metaspace, prepended to the first word only),
32000 pieces; then InstructBLIP's changes as transformers' conversion made them: bos, eos and
unk tokens all ``</s>`` (so every prompt starts with ``</s>``, id 2), ``[PAD]`` added (32000)
and ``<image>`` (32001), 32002 tokens. The pieces are ``▁``, single characters, ``▁`` + one to
three lowercase letters and two- to three-letter strings, each with its merge, so that any
lowercase text round-trips and a random model's tokens decode to letters. Not kept: the real
merges and their ranks (tokenization of real words differs), the SentencePiece model file.
"""

from __future__ import annotations

import itertools
import string
from pathlib import Path

from ulip2_pipeline.models.real_models import INSTRUCTBLIP_VICUNA_TOKENIZER

SPACE = INSTRUCTBLIP_VICUNA_TOKENIZER["space_piece"]


def vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(piece -> id, merges) of ``size_without_added`` (32000) pieces; every piece longer than one character is the
    merge of two earlier pieces."""
    t = INSTRUCTBLIP_VICUNA_TOKENIZER
    size = t["size_without_added"]
    vocab = dict(t["pieces"])
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = t["byte_pieces_from"] + byte
    merges: list[tuple[str, str]] = []

    def add(piece: str, merge: tuple[str, str] | None = None) -> None:
        if piece not in vocab and len(vocab) < size:
            vocab[piece] = len(vocab)
            if merge is not None:
                merges.append(merge)

    characters = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
    add(SPACE)
    for char in characters:
        add(char)
    for char in characters:
        add(SPACE + char, (SPACE, char))
    lower = string.ascii_lowercase
    for a, b in itertools.product(lower, repeat=2):
        add(SPACE + a + b, (SPACE + a, b))
    for a, b in itertools.product(lower, repeat=2):
        add(a + b, (a, b))
    for a, b, c in itertools.product(lower, repeat=3):
        add(SPACE + a + b + c, (SPACE + a + b, c))
    for a, b, c in itertools.product(lower, repeat=3):
        add(a + b + c, (a + b, c))
    if len(vocab) != size:
        raise AssertionError(f"the LLaMA vocabulary has {len(vocab)} pieces, not {size}")
    return vocab, merges


def build_tokenizer():
    """transformers 5's ``LlamaTokenizer`` (``LlamaTokenizerFast``) over ``vocabulary()``, as InstructBLIP Vicuna's."""
    from transformers import AddedToken, LlamaTokenizer

    t = INSTRUCTBLIP_VICUNA_TOKENIZER
    vocab, merges = vocabulary()
    tokenizer = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=t["bos_token"],
        eos_token=t["eos_token"],
        unk_token=t["unk_token"],
        add_bos_token=t["add_bos_token"],
        add_eos_token=t["add_eos_token"],
        truncation_side=t["truncation_side"],
    )
    tokenizer.add_special_tokens({"pad_token": t["pad_token"]})
    tokenizer.add_tokens([AddedToken(t["image_token"], normalized=False, special=True)], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids([t["pad_token"], t["image_token"]])
    if ids != [t["pad_token_id"], t["image_token_id"]] or len(tokenizer) != t["size"]:
        raise AssertionError("the Vicuna vocabulary does not end with [PAD] 32000 and <image> 32001")
    return tokenizer


def write_tokenizer_files(out_dir: str | Path) -> None:
    """tokenizer.json and tokenizer_config.json, as transformers saves a LLaMA tokenizer."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(out_dir)
