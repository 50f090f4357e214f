"""The captioner is chosen from the model's configuration, never its name, and a checkpoint whose weights do not
fit its architecture is refused, naming the keys, instead of running with parts of it at random."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from stand_ins import stand_ins, t5_stand_in  # noqa: F401 - fixture

from ulip2_pipeline.models import blip2, blip2_t5
from ulip2_pipeline.models.blip2 import GenerationSettings
from ulip2_pipeline.models.captioners import Captioner, captioner_family, load_captioner

CPU = torch.device("cpu")
WEIGHTS = "model.safetensors"


def images(count=3):
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(count)]


def config_only(folder: Path, config: dict) -> str:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def saved_config(model_dir) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def test_the_family_comes_from_the_configuration_not_the_name(tmp_path, stand_ins, t5_stand_in):
    """Each stand-in's config.json in a folder named after the other family is still its own family."""
    t5_named_opt = config_only(tmp_path / "Salesforce" / "blip2-opt-6.7b", saved_config(t5_stand_in))
    opt_named_t5 = config_only(tmp_path / "Salesforce" / "blip2-flan-t5-xl", saved_config(stand_ins["blip2"]))
    assert captioner_family(t5_named_opt) == "blip2-t5"
    assert captioner_family(opt_named_t5) == "blip2-opt"


def test_a_model_type_that_is_not_a_captioner_is_refused_naming_it_and_the_families(tmp_path, t5_stand_in):
    text_only = config_only(tmp_path / "blip2-flan-t5-xl", saved_config(t5_stand_in)["text_config"])  # a bare T5
    with pytest.raises(ValueError) as raised:
        captioner_family(text_only)
    message = str(raised.value)
    assert message.startswith(f"{text_only}: model_type 't5' is not a captioner")
    assert "blip2-opt" in message
    assert "blip2-t5" in message


def test_a_model_type_transformers_does_not_know_is_refused_naming_the_families(tmp_path):
    unknown = config_only(tmp_path / "blip2-opt-2.7b", {"model_type": "no-such-captioner"})
    with pytest.raises(ValueError, match=r"(?s)no-such-captioner.*supported families: blip2-opt: .*blip2-t5: "):
        captioner_family(unknown)


@pytest.mark.parametrize("which, family, end_ids", [("opt", "blip2-opt", [50118]), ("t5", "blip2-t5", [1])])
def test_the_captioner_exposes_its_family_and_captions_through_its_familys_loop(
    stand_ins, t5_stand_in, which, family, end_ids
):
    model_dir = stand_ins["blip2"] if which == "opt" else t5_stand_in
    captioner = load_captioner(model_dir, CPU)
    assert isinstance(captioner, Captioner)
    assert (captioner.family, captioner.model_id, captioner.end_ids) == (family, model_dir, end_ids)
    assert captioner.dtype == torch.float32
    assert type(captioner.model).__name__ == "Blip2ForConditionalGeneration"
    assert type(captioner.processor).__name__ == "Blip2Processor"
    settings = GenerationSettings(num_captions=3, max_new_tokens=6)
    captions = captioner.caption(images(), [4, 5, 6], settings)
    loop = blip2 if which == "opt" else blip2_t5
    assert captions == loop.caption_batch(captioner.model, captioner.processor, images(), [4, 5, 6], settings)
    assert [len(group) for group in captions] == [3, 3, 3]


@pytest.mark.parametrize("precision, dtype", [("bfloat16", torch.bfloat16), ("auto", torch.float32)])
def test_the_captioner_loads_in_the_asked_precision(t5_stand_in, precision, dtype):
    captioner = load_captioner(t5_stand_in, CPU, precision)
    assert captioner.dtype == dtype
    assert captioner.model.language_model.lm_head.weight.dtype == dtype


def test_the_captioner_is_loaded_onto_the_requested_device(t5_stand_in):
    captioner = load_captioner(t5_stand_in, torch.device("meta"))
    assert {p.device.type for p in captioner.model.parameters()} == {"meta"}


# --- loading exactly what the checkpoint is ---


def test_correct_checkpoints_load_with_their_tied_and_untied_output_embeddings(stand_ins, t5_stand_in):
    """OPT's output embedding is its input embedding (saved once); Flan-T5 keeps its own: neither is a problem."""
    opt = load_captioner(stand_ins["blip2"], CPU).model.language_model
    assert opt.lm_head.weight is opt.get_input_embeddings().weight
    assert "language_model.lm_head.weight" not in load_file(Path(stand_ins["blip2"]) / WEIGHTS)
    t5 = load_captioner(t5_stand_in, CPU).model.language_model
    assert t5.lm_head.weight is not t5.shared.weight
    assert torch.equal(t5.lm_head.weight, load_file(Path(t5_stand_in) / WEIGHTS)["language_model.lm_head.weight"])


def edited_copy(model_dir, folder: Path, edit) -> str:
    shutil.copytree(model_dir, folder)
    weights = load_file(folder / WEIGHTS)
    edit(weights)
    save_file(weights, folder / WEIGHTS, metadata={"format": "pt"})
    return str(folder)


CROSS_QUERY = "qformer.encoder.layer.0.crossattention.attention.query.weight"


def test_a_checkpoint_with_a_renamed_key_is_refused_naming_both_keys(tmp_path, stand_ins):
    def rename(weights):
        weights[CROSS_QUERY.replace("query", "q_proj")] = weights.pop(CROSS_QUERY)

    model_dir = edited_copy(stand_ins["blip2"], tmp_path / "renamed", rename)
    with pytest.raises(ValueError) as raised:
        load_captioner(model_dir, CPU)
    message = str(raised.value)
    assert message.startswith(f"{model_dir}: its checkpoint does not fit the model its config describes")
    assert f"missing keys: {CROSS_QUERY};" in message
    assert f"unexpected keys: {CROSS_QUERY.replace('query', 'q_proj')})" in message


def test_a_checkpoint_with_an_extra_key_is_refused_naming_it(tmp_path, t5_stand_in):
    """As an InstructBLIP Q-Former's embeddings would be: BLIP-2's Q-Former has none."""

    def add(weights):
        weights["qformer.embeddings.word_embeddings.weight"] = torch.zeros(4, 64)

    model_dir = edited_copy(t5_stand_in, tmp_path / "extra", add)
    with pytest.raises(ValueError, match=r"\(unexpected keys: qformer\.embeddings\.word_embeddings\.weight\)"):
        load_captioner(model_dir, CPU)


def test_a_checkpoint_with_a_weight_of_another_shape_is_refused_naming_it(tmp_path, t5_stand_in):
    def reshape(weights):
        weights["language_projection.weight"] = weights["language_projection.weight"][:32]

    model_dir = edited_copy(t5_stand_in, tmp_path / "reshaped", reshape)
    with pytest.raises(ValueError, match=r"\(mismatched keys: language_projection\.weight\)"):
        load_captioner(model_dir, CPU)


def test_many_bad_keys_are_named_up_to_five_and_counted(tmp_path, stand_ins):
    def drop_layer(weights):
        for key in [k for k in weights if k.startswith("qformer.encoder.layer.1.")]:
            del weights[key]

    model_dir = edited_copy(stand_ins["blip2"], tmp_path / "dropped", drop_layer)
    with pytest.raises(ValueError) as raised:
        blip2.load_captioner(model_dir, CPU)  # the OPT loader the benchmark uses refuses it as well
    missing = str(raised.value).split("missing keys: ")[1]
    assert missing.count("qformer.encoder.layer.1.") == 5
    assert missing.endswith("in all)); refusing to run with weights left at random")
