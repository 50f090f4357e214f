"""Which texts an object gets in the OpenShape export, decided in one place for the encoder and the writer.

OpenShape's loader reads ``text`` (a list of strings, the object's "original" texts, from which it
samples one) and ``blip_caption`` (one string). Ours:

- ``text``: the category's names (a ShapeNet synset name such as "ashcan,trash can" gives both);
  without a category, the object's kept captions, best CLIP score first, so the list is never
  empty while the object has any caption (the loader samples from it unconditionally).
- ``blip_caption``: the object's single best kept caption over every view (highest CLIP score
  of a caption against its own view; ties go to the earlier view).
"""

from __future__ import annotations

from ulip2_pipeline.records import Row

TRIPLET_TEXT_COLUMNS = ["uid", "category", "captions", "caption_scores", "kept"]


def category_names(category: str | None) -> list[str]:
    names = [name.strip() for name in (category or "").split(",")]
    return list(dict.fromkeys(name for name in names if name))


def kept_by_score(row: Row) -> list[str]:
    """Distinct kept captions of every view, best CLIP score first (ties: earlier view, then earlier rank)."""
    scored = []
    for view, (texts, scores, kept) in enumerate(zip(row["captions"], row["caption_scores"], row["kept"])):
        for rank, text in enumerate(kept):
            scored.append((-scores[texts.index(text)], view, rank, text))
    return list(dict.fromkeys(text for *_, text in sorted(scored)))


def openshape_texts(row: Row) -> tuple[list[str], str]:
    """(``text`` list, ``blip_caption``) of a triplet row; the caption is "" when nothing was kept."""
    captions = kept_by_score(row)
    return category_names(row["category"]) or captions, (captions[0] if captions else "")


def strings_to_encode(row: Row) -> list[str]:
    """Every distinct string the object's OpenShape record needs a text feature of."""
    texts, caption = openshape_texts(row)
    return list(dict.fromkeys(texts + ([caption] if caption else [])))
