"""A ShapeNetCore v2 tree: {synset}/{model}/models/model_normalized.obj."""

from __future__ import annotations

import json
from pathlib import Path

from ulip2_pipeline.sources import SourceError, SourceObject

# The 55 ShapeNetCore synsets, used when the tree has no taxonomy.json.
SYNSET_NAMES = {
    "02691156": "airplane",
    "02747177": "trash bin",
    "02773838": "bag",
    "02801938": "basket",
    "02808440": "bathtub",
    "02818832": "bed",
    "02828884": "bench",
    "02843684": "birdhouse",
    "02871439": "bookshelf",
    "02876657": "bottle",
    "02880940": "bowl",
    "02924116": "bus",
    "02933112": "cabinet",
    "02942699": "camera",
    "02946921": "can",
    "02954340": "cap",
    "02958343": "car",
    "02992529": "cellphone",
    "03001627": "chair",
    "03046257": "clock",
    "03085013": "keyboard",
    "03207941": "dishwasher",
    "03211117": "display",
    "03261776": "earphone",
    "03325088": "faucet",
    "03337140": "file cabinet",
    "03467517": "guitar",
    "03513137": "helmet",
    "03593526": "jar",
    "03624134": "knife",
    "03636649": "lamp",
    "03642806": "laptop",
    "03691459": "loudspeaker",
    "03710193": "mailbox",
    "03759954": "microphone",
    "03761084": "microwave",
    "03790512": "motorbike",
    "03797390": "mug",
    "03928116": "piano",
    "03938244": "pillow",
    "03948459": "pistol",
    "03991062": "pot",
    "04004475": "printer",
    "04074963": "remote control",
    "04090263": "rifle",
    "04099429": "rocket",
    "04225987": "skateboard",
    "04256520": "sofa",
    "04330267": "stove",
    "04379243": "table",
    "04401088": "telephone",
    "04460130": "tower",
    "04468005": "train",
    "04530566": "watercraft",
    "04554684": "washer",
}


def synset_names(root: Path) -> dict[str, str]:
    taxonomy = root / "taxonomy.json"
    if not taxonomy.exists():
        return dict(SYNSET_NAMES)
    names = dict(SYNSET_NAMES)
    for entry in json.loads(taxonomy.read_text()):
        # taxonomy names are comma-separated synonyms: "chair" or "ashcan,trash can,..."
        names[entry["synsetId"]] = entry["name"].split(",")[0].strip()
    return names


def list_shapenet(root: Path, synsets: list[str]) -> list[SourceObject]:
    if not root.is_dir():
        raise SourceError(f"ShapeNet root {root} does not exist or is not a folder")
    names = synset_names(root)
    objects = []
    for synset_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        synset = synset_dir.name
        if not (len(synset) == 8 and synset.isdigit()) or (synsets and synset not in synsets):
            continue
        for model_dir in sorted(p for p in synset_dir.iterdir() if p.is_dir()):
            mesh = model_dir / "models" / "model_normalized.obj"
            if mesh.exists():
                objects.append(
                    SourceObject(
                        uid=f"{synset}_{model_dir.name}", path=mesh, root=root, category=names.get(synset, synset)
                    )
                )
    return objects
