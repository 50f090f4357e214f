"""An offline SentencePiece-style unigram vocabulary laid out like T5's (and so BLIP-2 Flan-T5's), saved as the
hub's tokenizer files without the sentencepiece package.

Flan-T5's real vocabulary is a 32000-piece SentencePiece model; it cannot be downloaded
here, and the ``sentencepiece`` package is not installed. What the caption code depends
on is its layout, and that is kept: ``<pad> </s> <unk>`` at ids 0-2, the word boundary
``▁`` at 3, 32000 pieces, the 100 sentinels ``<extra_id_N>`` numbered downwards from 32099
(``<extra_id_0>``) to 32000 (``<extra_id_99>``), then ``<image>`` (32100) added as a
special token: 32101 tokens. The tokenizer splits on whitespace, marks word starts with
``▁`` (Metaspace, as T5's tokenizer.json), appends ``</s>`` to every text and adds no BOS.
The pieces are caption words (with ``▁``), single characters with and without ``▁``, and,
to reach the real size, lowercase letter strings, so that a random model's tokens decode
to letters. Not kept: SentencePiece's precompiled normaliser (the charsmap comes from the
real model file).
"""

from __future__ import annotations

import itertools
import string
from pathlib import Path

from ulip2_pipeline.models.real_models import BLIP2_T5_TOKENIZER

SPACE = BLIP2_T5_TOKENIZER["space_piece"]

_WORDS = (
    "a an the of with on in and to is are at by for from as it its this that small large big little tiny "
    "red green blue yellow white black grey gray brown orange purple pink wooden metal plastic glass stone "
    "round square flat tall short long thin thick mug table bottle crate ball cone chair lamp cup box bowl "
    "vase car house tree plant building sofa bed desk shelf door window wall floor object model render "
    "rendering 3d shape picture photo image view toy simple low poly cartoon character figure animal "
    "dog cat bird fish person man woman head hand sword gun knife rock"
).split()


def pieces() -> list[tuple[str, float]]:
    """The unigram model's (piece, log-probability) list, T5's 32000 pieces and its 100 sentinels: 32100 entries."""
    specials = BLIP2_T5_TOKENIZER["special_ids"]
    size = BLIP2_T5_TOKENIZER["pieces"]
    vocab = [(token, 0.0) for token, _ in sorted(specials.items(), key=lambda item: item[1])]
    vocab.append((SPACE, -2.0))
    known = {token for token, _ in vocab}

    def add(piece: str, score: float) -> None:
        if piece not in known and len(vocab) < size:
            known.add(piece)
            vocab.append((piece, score))

    for rank, word in enumerate(_WORDS):
        add(SPACE + word, -5.0 - 0.001 * rank)
    for char in string.ascii_letters + string.digits + string.punctuation:
        add(char, -9.0)
        add(SPACE + char, -10.0)
    for length in itertools.count(2):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            word = "".join(letters)
            add(word, -12.0 - 1e-4 * len(vocab))
            add(SPACE + word, -12.0 - 1e-4 * len(vocab))
        if len(vocab) >= size:
            break
    extra = BLIP2_T5_TOKENIZER["extra_ids"]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(extra - 1, -1, -1)]
    return vocab


def build_tokenizer():
    """A ``T5TokenizerFast`` (transformers 5's ``T5Tokenizer``) over ``pieces()``, with ``<image>`` added."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import AddedToken, T5TokenizerFast

    t = BLIP2_T5_TOKENIZER
    eos_id = t["special_ids"][t["eos_token"]]
    backend = Tokenizer(Unigram(pieces(), unk_id=t["special_ids"][t["unk_token"]], byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always", split=True),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", t["eos_token"]],
        pair=["$A", t["eos_token"], "$B", t["eos_token"]],
        special_tokens=[(t["eos_token"], eos_id)],
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=backend,
        eos_token=t["eos_token"],
        unk_token=t["unk_token"],
        pad_token=t["pad_token"],
        extra_ids=t["extra_ids"],
        model_max_length=t["model_max_length"],
    )
    tokenizer.add_tokens([AddedToken(t["image_token"], normalized=False, special=True)], special_tokens=True)
    if tokenizer.convert_tokens_to_ids(t["image_token"]) != t["image_token_id"] or len(tokenizer) != t["size"]:
        raise AssertionError("the T5 vocabulary does not end with <image> at 32100")
    return tokenizer


def write_tokenizer_files(out_dir: str | Path) -> None:
    """tokenizer.json and tokenizer_config.json, as transformers saves a T5 tokenizer."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(out_dir)
