"""An offline byte-level BPE vocabulary laid out like Qwen2's (Qwen2.5, Qwen2.5-VL), written as the hub's tokenizer
files.

Qwen2's real vocabulary (151643 byte-level BPE entries, 151387 merges) cannot be downloaded
here. What the code that loads and prompts a Qwen model depends on is its layout, and that
is kept: GPT-2's 256-symbol byte alphabet at ids 0-255 in GPT-2's order (the newline ``Ċ``
198, the space ``Ġ`` 220), exactly 151643 base entries, then the 22 added tokens at their
real ids (``<|endoftext|>`` 151643, ``<|im_start|>`` 151644, ``<|im_end|>`` 151645, the
box/quad/vision tokens 151646-151656, the tool-call and fill-in-the-middle tokens
151657-151664), Qwen2's pre-tokenizer (NFC, its split regex, ByteLevel), no BOS, and a
chat template (Qwen2.5-VL-Instruct's unless another is given). The base entries after the
bytes are caption words (with and without a leading ``Ġ``, each prefix of a word an entry
too), then lowercase letter strings, each made by one merge of its prefix and its last
letter, so that every entry but the bytes has exactly one merge (151387 of them, as the
real file) and a random model's tokens decode to letters.

The vision tokens are part of Qwen2.5's base tokenizer, so the same files serve a text-only
Qwen2.5-Instruct stand-in (pass ``QWEN2_5_INSTRUCT_CHAT_TEMPLATE``).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from ulip2_pipeline.models.opt_vocab import bytes_to_unicode
from ulip2_pipeline.models.real_models import QWEN2_5_VL_CHAT_TEMPLATE, QWEN2_ADDED_TOKENS, QWEN2_TOKENIZER

_WORDS = (
    "a an the of with on in and to is are at by for from as it its this that small large big little tiny "
    "red green blue yellow white black grey gray brown orange purple pink wooden metal plastic glass stone "
    "round square flat tall short long thin thick mug table bottle crate ball cone chair lamp cup box bowl "
    "vase car house tree plant building sofa bed desk shelf door window wall floor object model render "
    "rendering 3d shape picture photo image view toy simple low poly cartoon character figure animal "
    "dog cat bird fish person man woman head hand sword gun knife rock describe one sentence"
).split()
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _alphabet() -> list[str]:
    """GPT-2's byte symbols in its id order: the printable bytes, then the others (so byte 10 is 198, 32 is 220)."""
    mapping = bytes_to_unicode()
    printable = [b for b in range(256) if mapping[b] == chr(b)]
    return [mapping[b] for b in printable] + [mapping[b] for b in range(256) if b not in printable]


def _candidates():
    """Pieces in merge order: every prefix (of two or more symbols) of each caption word with and without ``Ġ``,
    then ``Ġa`` .. ``Ġz``, then letter strings of growing length, each alone and after ``Ġ``."""
    space = bytes_to_unicode()[ord(" ")]
    for word in _WORDS:
        for form in (space + word, word):
            yield from (form[:end] for end in range(2, len(form) + 1))
    yield from (space + c for c in _LETTERS)
    for length in itertools.count(2):
        for chars in itertools.product(_LETTERS, repeat=length):
            yield "".join(chars)
            yield space + "".join(chars)


def build_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab: piece -> id for the 151643 base entries, merges in rank order: one per non-byte entry)."""
    size = QWEN2_TOKENIZER["base_entries"]
    entries = _alphabet()
    known = set(entries)
    merges = []
    for piece in _candidates():
        if len(entries) >= size:
            break
        if piece not in known:
            left, right = piece[:-1], piece[-1]
            if left not in known:
                raise AssertionError(f"{piece!r} has no prefix entry to merge from")
            entries.append(piece)
            known.add(piece)
            merges.append((left, right))
    vocab = {piece: index for index, piece in enumerate(entries)}
    if len(vocab) != size or len(merges) != QWEN2_TOKENIZER["merges"]:
        raise AssertionError("the Qwen2 vocabulary does not have 151643 entries and 151387 merges")
    return vocab, merges


def build_backend():
    """The ``tokenizers.Tokenizer`` of Qwen2's tokenizer.json: NFC, the split regex, ByteLevel, the added tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab, merges = build_vocab()
    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_TOKENIZER["pretokenize_regex"]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    backend.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    backend.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    for content, index, special in QWEN2_ADDED_TOKENS:  # in id order: each lands on the next free id
        token = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        if special:
            backend.add_special_tokens([token])
        else:
            backend.add_tokens([token])
        if backend.token_to_id(content) != index:
            raise AssertionError(f"{content} is not at id {index}")
    return backend, vocab, merges


def _added(content: str, special: bool) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def tokenizer_config(chat_template: str | None) -> dict:
    """tokenizer_config.json as the Qwen2.5(-VL)-Instruct hub repos have it."""
    t = QWEN2_TOKENIZER
    config = {
        "add_bos_token": t["add_bos_token"],
        "add_prefix_space": t["add_prefix_space"],
        "added_tokens_decoder": {
            str(index): _added(content, special) for content, index, special in QWEN2_ADDED_TOKENS
        },
        "additional_special_tokens": list(t["additional_special_tokens"]),
        "bos_token": t["bos_token"],
        "clean_up_tokenization_spaces": t["clean_up_tokenization_spaces"],
        "eos_token": t["eos_token"],
        "errors": t["errors"],
        "model_max_length": t["model_max_length"],
        "pad_token": t["pad_token"],
        "split_special_tokens": t["split_special_tokens"],
        "tokenizer_class": t["tokenizer_class"],
        "unk_token": t["unk_token"],
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    return config


def write_qwen2_tokenizer_files(out_dir: str | Path, chat_template: str | None = QWEN2_5_VL_CHAT_TEMPLATE) -> Path:
    """tokenizer.json, tokenizer_config.json (with ``chat_template``), vocab.json and merges.txt, as the hub repo
    has them; ``AutoTokenizer.from_pretrained(out_dir)`` loads them as a ``Qwen2Tokenizer``. A few seconds."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    backend, vocab, merges = build_backend()
    backend.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(chat_template), indent=2) + "\n")
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return out_dir
