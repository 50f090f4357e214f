"""An offline WordPiece vocabulary laid out like bert-base-uncased's, as InstructBLIP's Q-Former tokenizer has it.

InstructBLIP's Q-Former reads the instruction through bert-base-uncased's tokenizer with
``[DEC]`` added as its bos token (transformers' conversion script). Kept: the real size
(30522 entries, then ``[DEC]`` at 30522), the special ids (``[PAD]`` 0, ``[UNK]`` 100,
``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103, ``[unused*]`` filling 1-99 and 104-998), lower
casing, BERT's normaliser and pre-tokeniser (transformers 5's ``BertTokenizer`` builds them),
``[CLS] ... [SEP]`` around every text, truncation from the left, 512 positions. The entries
after 998 are punctuation, digits, letters, a few caption words, ``##`` continuations and
lowercase letter strings, so that lowercase text tokenizes and round-trips; the real words
and their ids are not kept.
"""

from __future__ import annotations

import itertools
import string
from pathlib import Path

from ulip2_pipeline.models.real_models import INSTRUCTBLIP_QFORMER_TOKENIZER

_WORDS = "a an the of with short image description caption photo picture view object 3d model render".split()


def vocabulary() -> dict[str, int]:
    """token -> id, ``size_without_added`` (30522) entries."""
    t = INSTRUCTBLIP_QFORMER_TOKENIZER
    size = t["size_without_added"]
    by_id = {index: token for token, index in t["special_ids"].items()}
    start, stop = t["unused_ids"]
    unused = 0
    vocab = {}
    for index in range(stop):
        if index >= start and index not in by_id:
            by_id[index] = f"[unused{unused}]"
            unused += 1
        vocab[by_id[index]] = index

    def add(token: str) -> None:
        if token not in vocab and len(vocab) < size:
            vocab[token] = len(vocab)

    for char in string.punctuation + string.digits + string.ascii_lowercase:
        add(char)
    for word in _WORDS:
        add(word)
    for char in string.digits + string.ascii_lowercase:
        add("##" + char)
    for length in itertools.count(2):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            add("".join(letters))
            add("##" + "".join(letters))
        if len(vocab) >= size:
            break
    return vocab


def build_tokenizer():
    """transformers 5's ``BertTokenizer`` (``BertTokenizerFast``) over ``vocabulary()`` with ``[DEC]`` added."""
    from transformers import BertTokenizerFast

    t = INSTRUCTBLIP_QFORMER_TOKENIZER
    tokenizer = BertTokenizerFast(
        vocab=vocabulary(),
        do_lower_case=t["do_lower_case"],
        model_max_length=t["model_max_length"],
        truncation_side=t["truncation_side"],
    )
    tokenizer.add_special_tokens({"bos_token": t["bos_token"]})
    if tokenizer.bos_token_id != t["bos_token_id"] or len(tokenizer) != t["size"]:
        raise AssertionError("the Q-Former vocabulary does not end with [DEC] at 30522")
    return tokenizer


def write_tokenizer_files(out_dir: str | Path) -> None:
    """tokenizer.json and tokenizer_config.json, as transformers saves a BERT tokenizer."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(out_dir)
