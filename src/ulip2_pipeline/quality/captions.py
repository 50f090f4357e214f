"""Caption quality flags: empty, repetitive (a sampling loop) and degenerate (not words) captions."""

from __future__ import annotations

import re

CAPTION_FLAGS = ("empty_caption", "repetitive_caption", "degenerate_caption")

# A degenerate caption: fewer than half of its visible characters are letters, or fewer than half of
# its whitespace-separated tokens are words.
_MIN_LETTER_SHARE = 0.5
_MIN_WORD_SHARE = 0.5

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")  # letters, with inner apostrophes or hyphens ("don't", "t-shirt")
_WORD_EDGES = ".,;:!?\"'“”‘’()"  # ordinary punctuation a word may carry ("chair," or "(red)"); not <>, [] or digits
_TOKEN = re.compile(r"\w+(?:['’-]\w+)*")  # the words repetition is counted on: punctuation dropped


def caption_flags(text: str, *, ngram: int = 3, max_repeats: int = 2, min_letters: int = 3) -> list[str]:
    """The quality flags of one caption, a sorted subset of ``CAPTION_FLAGS`` (empty when it looks fine).

    - ``empty_caption``: nothing but whitespace; then the only flag.
    - ``repetitive_caption``: a sampling loop, on the lowercased words with punctuation dropped: a phrase
      of 1 to ``ngram`` words said more than ``max_repeats`` times back to back ("white white white",
      "a chair a chair a chair"), or any run of ``ngram`` words said more than ``max_repeats`` times
      anywhere ("a chair with a chair with a chair with ..."). A phrase said twice ("a red car with a
      red roof") or a shorter one said often ("a small table with a small drawer and a small shelf") passes.
    - ``degenerate_caption``: fewer than ``min_letters`` letters ("a", "!!!", "3 3 4 ."), fewer than half
      of the visible characters letters ("#### 12"), or fewer than half of the tokens words ("<unk> <unk>").
      A word is letters (with inner apostrophes or hyphens), optionally wrapped in ordinary punctuation;
      numbers ("4"), markup ("<unk>", "[SEP]") and mixed tokens ("3d") are not words.
    """
    if not text.strip():
        return ["empty_caption"]
    flags = []
    if _is_repetitive(_TOKEN.findall(text.lower()), ngram=ngram, max_repeats=max_repeats):
        flags.append("repetitive_caption")
    if _is_degenerate(text, min_letters=min_letters):
        flags.append("degenerate_caption")
    return sorted(flags)


def _is_repetitive(words: list[str], *, ngram: int, max_repeats: int) -> bool:
    """Whether some phrase of 1..ngram words repeats more than max_repeats times in a row, or some
    ngram-word phrase more than max_repeats times in all."""
    counts: dict[tuple[str, ...], int] = {}
    for start in range(len(words) - ngram + 1):
        phrase = tuple(words[start : start + ngram])
        counts[phrase] = counts.get(phrase, 0) + 1
        if counts[phrase] > max_repeats:
            return True
    for length in range(1, ngram + 1):
        for start in range(len(words) - length + 1):
            phrase = words[start : start + length]
            said = 1
            while words[start + said * length : start + (said + 1) * length] == phrase:
                said += 1
            if said > max_repeats:
                return True
    return False


def _is_degenerate(text: str, *, min_letters: int) -> bool:
    """Too few letters, mostly non-letters among the visible characters, or mostly tokens that are not words."""
    visible = [char for char in text if not char.isspace()]
    letters = sum(char.isalpha() for char in visible)
    if letters < min_letters or letters < _MIN_LETTER_SHARE * len(visible):
        return True
    tokens = text.split()
    words = sum(_WORD.fullmatch(token.strip(_WORD_EDGES)) is not None for token in tokens)
    return words < _MIN_WORD_SHARE * len(tokens)
