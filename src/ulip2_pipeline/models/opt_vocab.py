"""An offline byte-level BPE vocabulary laid out like OPT's (and so BLIP-2 OPT's), written as the hub's files.

OPT's real vocabulary is GPT-2's 50k byte-level BPE re-numbered in fairseq's order;
it cannot be downloaded here. What the caption code depends on is its layout, and
that is kept: ``<s> <pad> </s> <unk>`` at ids 0-3, the newline ``Ċ`` at 50118 (the
id BLIP-2 OPT ends captions with), 50265 BPE entries, then ``<image>`` (50265) added
as a special token: 50266 tokens. The entries are GPT-2's 256-symbol byte alphabet,
merges learned here on caption-like text ending in a newline, and, to reach the
real size, lowercase letter strings (with and without a leading space), each with
its merge, so that a random model's tokens decode to letters, not control bytes.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

from ulip2_pipeline.models.real_models import BLIP2_PROCESSOR_CONFIG, BLIP2_TOKENIZER

VOCAB_ENTRIES = BLIP2_TOKENIZER["image_token_id"]  # BPE entries before <image>: ids 0 .. 50264

_WORDS = (
    "a an the of with on in and small large red green blue yellow white black grey wooden metal "
    "plastic round square tall short mug table bottle crate ball cone chair lamp cup box object "
    "model render 3d shape picture photo view toy simple"
).split()


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte 10, the newline, becomes 'Ċ')."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def caption_corpus() -> list[str]:
    """Caption-like lines, each ending in a newline as in LAVIS's BLIP-2 training text."""
    return [f"a {a} {b} {c}\n" for a, b, c in itertools.islice(itertools.product(_WORDS, repeat=3), 0, 20000, 7)]


def _pre_tokens(text: str) -> list[str]:
    from tokenizers import pre_tokenizers

    splitter = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return [piece for piece, _ in splitter.pre_tokenize_str(text)]


def learn_merges(corpus: list[str], max_merges: int = 2000) -> list[tuple[str, str]]:
    """Byte-level BPE merges, most frequent pair first (ties: the smaller pair), until no pair repeats."""
    words = Counter(tuple(piece) for line in corpus for piece in _pre_tokens(line))
    merges = []
    for _ in range(max_merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def _filler_tokens():
    """' a' .. ' z', then 'aa', ' aa', ... 'zzz', ' zzz', 'aaaa', ...: each one's prefix comes first."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    space = bytes_to_unicode()[ord(" ")]
    yield from (space + c for c in letters)
    for length in itertools.count(2):
        for chars in itertools.product(letters, repeat=length):
            yield "".join(chars)
            yield space + "".join(chars)


def build_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab: token -> id, merges in rank order) with OPT's special ids and the newline at 50118."""
    specials = BLIP2_TOKENIZER["special_ids"]
    newline, newline_id = BLIP2_TOKENIZER["newline_token"], BLIP2_TOKENIZER["newline_id"]
    alphabet = list(bytes_to_unicode().values())
    merges = learn_merges(caption_corpus())
    entries = [c for c in alphabet if c != newline] + [a + b for a, b in merges]
    known = set(entries) | {newline}
    for token in _filler_tokens():
        if len(entries) + len(specials) + 1 >= VOCAB_ENTRIES:
            break
        if token not in known:
            entries.append(token)
            known.add(token)
            merges.append((token[:-1], token[-1]))
    vocab = dict(specials)
    ids = (i for i in range(len(specials), VOCAB_ENTRIES) if i != newline_id)
    for token, index in zip(entries, ids):
        vocab[token] = index
    vocab[newline] = newline_id
    if len(vocab) != VOCAB_ENTRIES or sorted(vocab.values()) != list(range(VOCAB_ENTRIES)):
        raise AssertionError("the vocabulary does not fill ids 0 .. 50264 exactly once")
    return vocab, merges


def _added(content: str) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }


def write_tokenizer_files(out_dir: str | Path) -> None:
    """vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json as the hub repo has them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab()
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    t = BLIP2_TOKENIZER
    added = {
        str(t["special_ids"]["<pad>"]): _added("<pad>"),
        str(t["special_ids"]["</s>"]): _added("</s>"),
        str(t["image_token_id"]): _added(t["image_token"]),
    }
    config = {
        "tokenizer_class": t["tokenizer_class"],
        "add_bos_token": t["add_bos_token"],
        "add_prefix_space": t["add_prefix_space"],
        "errors": t["errors"],
        "bos_token": t["bos_token"],
        "eos_token": t["eos_token"],
        "unk_token": t["unk_token"],
        "pad_token": t["pad_token"],
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1000000000000000019884624838656,
        "processor_class": BLIP2_PROCESSOR_CONFIG["processor_class"],
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    special_map = {
        "bos_token": t["bos_token"],
        "eos_token": t["eos_token"],
        "unk_token": t["unk_token"],
        "pad_token": t["pad_token"],
        "additional_special_tokens": [t["image_token"]],
    }
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
