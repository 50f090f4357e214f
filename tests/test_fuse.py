"""The fuse stage: one caption per object from its views' kept captions (an instruct LLM, Cap3D's consolidation),
its stand-in of Qwen2.5-7B-Instruct, and where object captions go: the triplets, the embeddings, training."""

import fcntl
import hashlib
import json
import random
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import REPO, snakemake, write_config
from stand_ins import png, triplet_shard
from test_triplet_join import JOINED, join_shard

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.config import ConfigError, default_config, load_schema, validate_config
from ulip2_pipeline.models import fuse_llm, qwen_vocab, real_models, tiny_models
from ulip2_pipeline.models.blip2 import GenerationSettings
from ulip2_pipeline.settings import EmbedSettings, FuseSettings, TrainSettings
from ulip2_pipeline.stages import embed as embed_stage
from ulip2_pipeline.stages import fuse as fuse_stage
from ulip2_pipeline.stages.embed import EMBED_SCHEMA
from ulip2_pipeline.stages.model_stage import ModelCannotRun
from ulip2_pipeline.stages.rank import RANKED_SCHEMA
from ulip2_pipeline.stages.triplets import triplet_schema
from ulip2_pipeline.train.loader import TripletDataset
from ulip2_pipeline.train.trainer import OBJECT_CAPTION_PROB, Trainer

CPU = torch.device("cpu")
IM_START, IM_END, END_OF_TEXT = 151644, 151645, 151643


def stand_in_key() -> str:
    """Changes with the code that builds the stand-in and the libraries that save it."""
    digest = hashlib.sha256()
    for module in (tiny_models, real_models, qwen_vocab, fuse_llm):
        digest.update(Path(module.__file__).read_bytes())
    for package in ("torch", "transformers", "tokenizers"):
        digest.update(version(package).encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def qwen_stand_in() -> str:
    """The Qwen2.5-7B-Instruct stand-in's folder, built once per machine and version of its code (about 20 s)."""
    root = Path(tempfile.gettempdir()) / f"ulip2-stand-in-qwen2-instruct-{stand_in_key()}"
    built = root / "built.json"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(root, ignore_errors=True)
            folder = tiny_models.build_tiny_qwen2_instruct(root / "tiny-qwen2-instruct")
            built.write_text(json.dumps(str(folder)))
    return json.loads(built.read_text())


@pytest.fixture(scope="module")
def llm(qwen_stand_in):
    return fuse_llm.load_fuse_llm(qwen_stand_in, CPU)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fuse_cfg(model: str, **overrides) -> FuseSettings:
    section = {**default_config()["fuse"], "enabled": True, "model": model, "max_new_tokens": 40}
    section.update(batch_size=2, device="cpu", threads=1)
    return FuseSettings.from_config({**section, **overrides})


def prompts_of(llm, object_captions):
    return [llm.prompt_ids(fuse_llm.DEFAULT_SYSTEM, fuse_llm.DEFAULT_INSTRUCTION, c) for c in object_captions]


OBJECT_CAPTIONS = [
    ["a red wooden chair", "a chair with four legs", "a red chair seen from the side"],
    ["a white mug"] * 5 + ["a mug with a handle"] * 7,  # twelve views
    ["a tall lamp", "a lamp"],
]


def write_ranked(path, views) -> str:
    """views: (uid, view, [kept captions]); the columns the fuse stage reads, in the rank stage's schema."""
    rows = [
        {"uid": u, "view": v, "captions": k or [""], "scores": [0.5] * max(1, len(k)), "top_k": [0], "kept": k}
        for u, v, k in views
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=RANKED_SCHEMA), path)
    return str(path)


def metadata(path) -> dict:
    return {k.decode(): v.decode() for k, v in pq.read_schema(path).metadata.items()}


def run_fuse(tmp_path, views, settings) -> tuple:
    ranked = write_ranked(tmp_path / "ranked.parquet", views)
    summary = fuse_stage.run_shard(
        fuse_stage.Inputs(ranked, "00000"),
        settings,
        fuse_stage.Outputs(tmp_path / "fused.parquet", tmp_path / "failures.parquet"),
    )
    rows = pq.read_table(tmp_path / "fused.parquet").to_pylist()
    failures = pq.read_table(tmp_path / "failures.parquet").to_pylist()
    return summary, rows, failures


# --- the prompt -----------------------------------------------------------------------------------------------


def test_the_prompt_is_the_chat_template_over_the_system_message_and_the_listed_captions(llm):
    text = fuse_llm.chat_prompt(llm.tokenizer, "Be brief.", "Captions:\n{captions}\nOne caption:", ["a mug", "a cup"])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nCaptions:\n1. a mug\n2. a cup\nOne caption:<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = llm.prompt_ids(fuse_llm.DEFAULT_SYSTEM, fuse_llm.DEFAULT_INSTRUCTION, ["a mug", "a cup"])
    assert ids[0] == IM_START  # Qwen's template: no BOS
    assert llm.tokenizer.decode(ids).endswith(
        "a cup\nAvoid describing background, surface, and posture. The caption should be:"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ids.count(IM_START) == 3
    assert ids.count(IM_END) == 2
    user = fuse_llm.user_message(fuse_llm.DEFAULT_INSTRUCTION, ["a mug", "a cup"])
    assert user.startswith("Given a set of descriptions about the same 3D object, distill these descriptions")
    assert "as follows:\n1. a mug\n2. a cup\nAvoid describing" in user


def test_an_instruction_must_say_where_the_captions_go():
    with pytest.raises(ValueError, match=r"\{captions\}"):
        fuse_llm.user_message("Summarise these.", ["a mug"])
    with pytest.raises(ConfigError, match=r"fuse\.instruction"):
        default_config(fuse={"instruction": "Summarise these."})


def test_the_schemas_defaults_are_the_stages_own():
    fuse = load_schema(REPO / "config.schema.yaml")["$defs"]["fuse"]["properties"]
    assert fuse["instruction"]["default"] == fuse_llm.DEFAULT_INSTRUCTION
    assert fuse["system"]["default"] == fuse_llm.DEFAULT_SYSTEM
    section = default_config()["fuse"]
    assert (section["enabled"], section["model"], section["max_new_tokens"]) == (False, "Qwen/Qwen2.5-7B-Instruct", 60)
    assert (section["do_sample"], section["precision"]) == (False, "auto")
    preset = yaml.safe_load((REPO / "presets" / "real-models.yaml").read_text())
    assert preset["fuse"]["model"] == real_models.QWEN2_5_INSTRUCT_MODEL_ID
    demo = yaml.safe_load((REPO / "config.yaml").read_text())["fuse"]
    assert demo == {"enabled": False, "model": "results/models/tiny-qwen2-instruct"}  # the tiny_fuse_model rule's


def test_a_system_message_left_empty_is_left_out(llm):
    assert fuse_llm.chat_messages("", "{captions}", ["a"]) == [{"role": "user", "content": "1. a"}]


# --- decoding ---------------------------------------------------------------------------------------------------


def test_greedy_answers_are_deterministic_independent_of_batching_and_transformers_generate(llm):
    prompts = prompts_of(llm, OBJECT_CAPTIONS)
    greedy = GenerationSettings(num_captions=1, max_new_tokens=40, do_sample=False)
    batched = fuse_llm.generate_tokens(llm.model, prompts, [0, 1, 2], greedy, llm.end_ids, llm.pad_id)
    again = fuse_llm.generate_tokens(llm.model, prompts[::-1], [7, 8, 9], greedy, llm.end_ids, llm.pad_id)
    assert torch.equal(batched, again.flip(0))  # left padding changes nothing; seeds do not matter
    for row, prompt in zip(batched, prompts):
        reference = llm.model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False,
            max_new_tokens=40,
            eos_token_id=llm.end_ids,
            pad_token_id=llm.pad_id,
            repetition_penalty=1.0,
        )[0, len(prompt) :]
        assert row[: len(reference)].tolist() == reference.tolist()
        assert reference[-1] == IM_END


def test_seeded_sampling_is_independent_of_batching(llm):
    prompts = prompts_of(llm, OBJECT_CAPTIONS)
    sampled = GenerationSettings(num_captions=1, max_new_tokens=40, do_sample=True, top_p=0.9, temperature=1.0)
    together = llm.fuse(prompts, [11, 12, 13], sampled)
    alone = [llm.fuse([p], [s], sampled)[0] for p, s in zip(prompts, [11, 12, 13])]
    assert together == alone
    other_seeds = llm.fuse(prompts, [21, 22, 23], sampled)
    assert other_seeds != together
    greedy = llm.fuse(prompts, [11, 12, 13], GenerationSettings(num_captions=1, max_new_tokens=40, do_sample=False))
    assert greedy != together


def test_decoding_stops_at_either_end_id_and_pads_after_it():
    class Scripted(torch.nn.Module):
        """Answers 5, 6, <|endoftext|> to the first prompt and 5, <|im_end|> to the second."""

        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(8, 2)
            self.script = {0: [5, 6, 3], 1: [5, 4]}
            self.step = 0

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids, **kwargs):
            logits = torch.zeros(len(input_ids), 1, 8)
            for row in range(len(input_ids)):
                script = self.script[row]
                logits[row, 0, script[min(self.step, len(script) - 1)]] = 1.0
            self.step += 1
            return SimpleNamespace(logits=logits, past_key_values=None)

    settings = GenerationSettings(num_captions=1, max_new_tokens=6, do_sample=False)
    tokens = fuse_llm.generate_tokens(Scripted(), [[1, 2, 2], [2]], [0, 0], settings, [4, 3], 0)
    assert tokens.tolist() == [[5, 6, 3, 0, 0, 0], [5, 4, 0, 0, 0, 0]]


# --- the stand-in -----------------------------------------------------------------------------------------------


def test_the_stand_in_keeps_qwen2_5_instructs_config_tokens_and_chat_template(qwen_stand_in, llm):
    on_disk = json.loads((Path(qwen_stand_in) / "config.json").read_text())
    real = real_models.QWEN2_5_INSTRUCT_CONFIG
    shrunk = set(real_models.QWEN2_5_INSTRUCT_TINY_SIZES)
    assert {k: v for k, v in on_disk.items() if k not in shrunk} == {k: v for k, v in real.items() if k not in shrunk}
    config = llm.model.config
    assert (config.model_type, config.vocab_size, config.tie_word_embeddings) == ("qwen2", 152064, False)
    assert config.rope_parameters["rope_theta"] == 1e6
    assert llm.model.lm_head.weight.data_ptr() != llm.model.model.embed_tokens.weight.data_ptr()
    generation = json.loads((Path(qwen_stand_in) / "generation_config.json").read_text())
    assert generation == real_models.QWEN2_5_INSTRUCT_GENERATION_CONFIG
    assert (llm.end_ids, llm.pad_id) == ([IM_END, END_OF_TEXT], END_OF_TEXT)
    assert llm.tokenizer.convert_ids_to_tokens([IM_START, IM_END, END_OF_TEXT]) == [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
    ]
    assert llm.tokenizer.chat_template == real_models.QWEN2_5_INSTRUCT_CHAT_TEMPLATE
    assert type(llm.model).__name__ == "Qwen2ForCausalLM"


def test_the_real_size_config_builds_qwen2_5_7b():
    from transformers import Qwen2Config

    config = Qwen2Config.from_dict(real_models.qwen2_5_instruct_config())
    head_dim = config.hidden_size // config.num_attention_heads
    per_layer = (
        config.hidden_size * head_dim * (config.num_attention_heads * 2 + config.num_key_value_heads * 2)
        + 3 * config.hidden_size * config.intermediate_size
    )
    parameters = config.num_hidden_layers * per_layer + 2 * config.vocab_size * config.hidden_size
    assert 7.5e9 < parameters < 7.7e9  # Qwen2.5-7B: 7.61 B
    with pytest.raises(ValueError, match="only change sizes"):
        real_models.qwen2_5_instruct_config({"vocab_size": 10})


def test_the_stand_in_ends_its_answers_at_im_end_after_ten_to_twenty_tokens(llm):
    captions = OBJECT_CAPTIONS + [["a ball"] * 12, ["the " + "very " * 30 + "small toy car"] * 12]
    prompts = prompts_of(llm, captions)
    assert max(len(p) for p in prompts) > 600  # twelve long captions: a clock by position would have run out
    lengths = []
    for do_sample, seed in ((False, 0), (True, 1), (True, 2)):
        settings = GenerationSettings(num_captions=1, max_new_tokens=60, do_sample=do_sample, top_p=0.9)
        seeds = [seed * 100 + i for i in range(len(prompts))]
        tokens = fuse_llm.generate_tokens(llm.model, prompts, seeds, settings, llm.end_ids, llm.pad_id)
        for row in tokens.tolist():
            assert IM_END in row
            lengths.append(row.index(IM_END) + 1)
    assert 8 <= min(lengths)
    assert max(lengths) <= 25
    answer = llm.fuse(prompts[:1], [0], GenerationSettings(num_captions=1, max_new_tokens=60, do_sample=False))[0]
    assert answer
    assert all(word.isalpha() for word in answer.split())


# --- the stage --------------------------------------------------------------------------------------------------

VIEWS = [
    ("b_two_captions", 1, ["a blue mug from above"]),
    ("a_one_view", 0, ["a red chair"]),
    ("b_two_captions", 0, ["a blue mug"]),
    ("c_same_everywhere", 0, ["a lamp"]),
    ("c_same_everywhere", 2, ["a lamp"]),
    ("c_same_everywhere", 1, ["a lamp", ""]),
    ("d_nothing_kept", 0, []),
    ("e_three_views", 2, ["a ball, view 2"]),
    ("e_three_views", 0, ["a ball, view 0"]),
    ("e_three_views", 1, ["a ball, view 1"]),
]


def test_the_stage_fuses_each_object_and_copies_a_lone_caption(tmp_path, qwen_stand_in, llm):
    settings = fuse_cfg(qwen_stand_in)
    summary, rows, failures = run_fuse(tmp_path, VIEWS, settings)
    by_uid = {r["uid"]: r for r in rows}
    assert [r["uid"] for r in rows] == ["a_one_view", "b_two_captions", "c_same_everywhere", "e_three_views"]
    assert by_uid["b_two_captions"]["view_captions"] == ["a blue mug", "a blue mug from above"]  # view order
    assert by_uid["e_three_views"]["view_captions"] == ["a ball, view 0", "a ball, view 1", "a ball, view 2"]
    assert by_uid["e_three_views"]["views"] == [0, 1, 2]
    for uid, caption in (("a_one_view", "a red chair"), ("c_same_everywhere", "a lamp")):
        assert by_uid[uid]["object_caption"] == caption
        assert (by_uid[uid]["fusion"], by_uid[uid]["model"], by_uid[uid]["seed"]) == ("copied", None, None)
    greedy = GenerationSettings(num_captions=1, max_new_tokens=40, do_sample=False)
    for uid in ("b_two_captions", "e_three_views"):
        row = by_uid[uid]
        assert (row["fusion"], row["model"]) == ("model", qwen_stand_in)
        assert row["seed"] == fuse_stage.object_seed(0, uid)
        assert row["object_caption"] == llm.fuse(prompts_of(llm, [row["view_captions"]]), [0], greedy)[0]
        assert row["object_caption"] not in row["view_captions"]
    assert [(f["uid"], f["reason"]) for f in failures] == [("d_nothing_kept", "no_captions")]
    assert (summary["objects"], summary["fused"], summary["copied"], summary["failed"]) == (5, 2, 2, 1)
    meta = metadata(tmp_path / "fused.parquet")
    assert (meta["ulip2.stage"], meta["ulip2.model"], meta["ulip2.device"], meta["ulip2.dtype"]) == (
        "fuse",
        qwen_stand_in,
        "cpu",
        "float32",
    )
    recipe = json.loads(meta["ulip2.generation"])
    assert (recipe["eos_token_id"], recipe["do_sample"], recipe["single_caption"]) == (
        [IM_END, END_OF_TEXT],
        False,
        "copied",
    )
    assert recipe["instruction"] == settings.instruction


def test_seeded_sampling_in_the_stage_is_the_objects_own_whatever_the_batch(tmp_path, qwen_stand_in):
    sampled = {"do_sample": True, "top_p": 0.9, "temperature": 1.0, "seed": 3}
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    _, alone, _ = run_fuse(tmp_path / "one", VIEWS, fuse_cfg(qwen_stand_in, batch_size=1, **sampled))
    _, together, _ = run_fuse(tmp_path / "three", VIEWS, fuse_cfg(qwen_stand_in, batch_size=3, **sampled))
    assert alone == together
    assert {r["seed"] for r in alone if r["fusion"] == "model"} == {
        fuse_stage.object_seed(3, "b_two_captions"),
        fuse_stage.object_seed(3, "e_three_views"),
    }


class FakeLLM:
    """Stands in for ``load_fuse_llm``: answers "fused: ..." and fails on a prompt whose captions hold "poison"
    (or on every prompt, ``always_fails``)."""

    def __init__(self, always_fails: bool = False):
        self.always_fails, self.dtype, self.end_ids, self.pad_id = always_fails, torch.float32, [2], 0

    def prompt_ids(self, system, instruction, captions):
        return [1 if any("poison" in c for c in captions) else 0, len(captions)]

    def fuse(self, prompts, seeds, settings):
        if self.always_fails or any(p[0] == 1 for p in prompts):
            raise RuntimeError("index out of range in self")
        return [f"fused: {p[1]} captions" for p in prompts]


def test_an_object_the_model_fails_on_becomes_a_failure_row(tmp_path, monkeypatch):
    monkeypatch.setattr(fuse_stage, "load_fuse_llm", lambda *args: FakeLLM())
    views = [
        ("a", 0, ["a mug"]),
        ("a", 1, ["a cup"]),
        ("b", 0, ["poison"]),
        ("b", 1, ["a poisoned cup"]),
        ("c", 0, ["a lamp"]),
        ("c", 1, ["a light"]),
    ]
    summary, rows, failures = run_fuse(tmp_path, views, fuse_cfg("fake", batch_size=3))
    assert [(r["uid"], r["object_caption"]) for r in rows] == [("a", "fused: 2 captions"), ("c", "fused: 2 captions")]
    assert [(f["uid"], f["stage"], f["reason"]) for f in failures] == [("b", "fuse", "model_error")]
    assert failures[0]["detail"] == "RuntimeError: index out of range in self"
    assert summary["failed"] == 1


def test_an_empty_answer_is_a_failure_row_not_an_empty_caption(tmp_path, monkeypatch):
    fake = FakeLLM()
    fake.fuse = lambda prompts, seeds, settings: ["" for _ in prompts]
    monkeypatch.setattr(fuse_stage, "load_fuse_llm", lambda *args: fake)
    _, rows, failures = run_fuse(tmp_path, [("a", 0, ["a mug"]), ("a", 1, ["a cup"])], fuse_cfg("fake"))
    assert rows == []
    assert [(f["uid"], f["reason"]) for f in failures] == [("a", "empty_caption")]


def test_a_model_that_cannot_run_stops_the_job_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(fuse_stage, "load_fuse_llm", lambda *args: FakeLLM(always_fails=True))
    views = [("a", 0, ["a mug"]), ("a", 1, ["a cup"]), ("b", 0, ["a lamp"]), ("b", 1, ["a light"])]
    with pytest.raises(ModelCannotRun) as raised:
        run_fuse(tmp_path, views, fuse_cfg("fake", batch_size=2))
    assert str(raised.value) == (
        "fuse: model fake cannot run: every object of the first batch (2) failed alone with RuntimeError: "
        "index out of range in self; no object was written"
    )
    assert not (tmp_path / "fused.parquet").exists()
    assert not (tmp_path / "failures.parquet").exists()


def test_a_shard_with_one_failing_object_still_gets_its_row(tmp_path, monkeypatch):
    monkeypatch.setattr(fuse_stage, "load_fuse_llm", lambda *args: FakeLLM(always_fails=True))
    _, rows, failures = run_fuse(tmp_path, [("a", 0, ["a mug"]), ("a", 1, ["a cup"])], fuse_cfg("fake"))
    assert rows == []
    assert [(f["uid"], f["reason"]) for f in failures] == [("a", "model_error")]


@pytest.mark.parametrize(
    "views", [[], [("a", 0, ["a mug"]), ("b", 0, ["a lamp"]), ("b", 1, ["a lamp"])]], ids=["empty", "copies"]
)
def test_no_model_is_loaded_for_a_shard_with_nothing_to_fuse(tmp_path, monkeypatch, views):
    def refuse(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(fuse_stage, "load_fuse_llm", refuse)
    summary, rows, failures = run_fuse(tmp_path, views, fuse_cfg("/no/such/model"))
    assert len(rows) == summary["copied"] == len({v[0] for v in views})
    assert failures == []
    assert pq.read_schema(tmp_path / "fused.parquet").remove_metadata() == fuse_stage.FUSED_SCHEMA
    meta = metadata(tmp_path / "fused.parquet")
    assert (meta["ulip2.device"], meta["ulip2.dtype"], meta["ulip2.model"]) == ("none", "none", "/no/such/model")


def test_a_checkpoint_that_is_not_an_instruct_llm_is_refused(tmp_path, qwen_stand_in):
    copy = tmp_path / "no-template"
    shutil.copytree(qwen_stand_in, copy)
    tokenizer_config = json.loads((copy / "tokenizer_config.json").read_text())
    del tokenizer_config["chat_template"]
    (copy / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with pytest.raises(ValueError, match="no chat template"):
        fuse_llm.load_fuse_llm(str(copy), CPU)


# --- triplets, embeddings, training -----------------------------------------------------------------------------


def test_the_triplet_join_carries_each_objects_caption_by_uid(tmp_path):
    fused = [
        {"uid": "f_one_view", "object_caption": "object f", "view_captions": ["x"], "views": [0], "fusion": "copied"},
        {
            "uid": "zz_not_joined",
            "object_caption": "object z",
            "view_captions": ["x"],
            "views": [0],
            "fusion": "copied",
        },
        {"uid": "b_two_views", "object_caption": "object b", "view_captions": ["x", "y"], "views": [0, 1]},
    ]
    fused[2].update(fusion="model", model="m", seed=1)
    write_parquet(
        pa.Table.from_pylist(fused, schema=fuse_stage.FUSED_SCHEMA), tmp_path / "fused.parquet", {"ulip2.model": "m"}
    )
    _, rows, _ = join_shard(tmp_path, fused=tmp_path / "fused.parquet")
    assert [r["uid"] for r in rows] == JOINED
    assert {r["uid"]: r["object_caption"] for r in rows} == {
        "b_two_views": "object b",
        "c_one_view_uncaptioned": None,  # no fused caption: null
        "f_one_view": "object f",
    }
    assert json.loads(metadata(tmp_path / "triplets.parquet")["ulip2.fusion"]) == {
        "ran": True,
        "model": "m",
        "object_captions": 2,
    }


def test_without_the_fuse_stage_the_object_caption_is_null_and_recorded(tmp_path):
    _, rows, _ = join_shard(tmp_path)
    assert [r["object_caption"] for r in rows] == [None] * len(JOINED)
    assert json.loads(metadata(tmp_path / "triplets.parquet")["ulip2.fusion"]) == {"ran": False}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> EmbedSettings:
    files = tiny_models.build_tiny_clip(tmp_path_factory.mktemp("clip"), real_models.CLIP_EMBED)
    section = {**default_config()["embed"], "name": "tiny", **files, "batch_size": 2, "device": "cpu", "threads": 1}
    return EmbedSettings.from_config(section)


def test_the_embed_stage_stores_one_text_embedding_of_each_object_caption(tmp_path, tiny_clip):
    objects = [
        ("u1", [png((200, 0, 0))], [["a red thing"]]),
        ("u2", [png((0, 200, 0)), png((0, 0, 200))], [["a green thing"], ["a blue thing"]]),
        ("u3", [png((9, 9, 9))], [["a grey thing"]]),
    ]
    path = triplet_shard(tmp_path / "t.parquet", objects)
    table = pq.read_table(path)
    table = table.append_column("object_caption", pa.array(["a red object", None, "a grey object"], pa.string()))
    pq.write_table(table, path)
    embed_stage.run_shard(embed_stage.Inputs(path, "00000"), tiny_clip, embed_stage.Outputs(tmp_path / "e.parquet"))
    rows = pq.read_table(tmp_path / "e.parquet").to_pylist()
    assert rows[1]["object_caption_embedding"] is None
    from ulip2_pipeline.models.clip import load_configured_clip

    clip = load_configured_clip(tiny_clip)
    expected = embed_stage._encode_texts(clip, ["a red object", "a grey object"])
    np.testing.assert_allclose(rows[0]["object_caption_embedding"], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows[2]["object_caption_embedding"], expected[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(rows[0]["object_caption_embedding"], rows[0]["caption_embeddings"][0], atol=1e-3)
    assert pq.read_schema(tmp_path / "e.parquet").metadata[b"ulip2.stage"] == b"embed"


def test_embedding_triplets_written_before_the_fuse_stage_still_works(tmp_path, tiny_clip):
    path = triplet_shard(tmp_path / "t.parquet", [("u1", [png((200, 0, 0))], [["a red thing"]])])
    assert "object_caption" not in pq.read_schema(path).names
    embed_stage.run_shard(embed_stage.Inputs(path, "00000"), tiny_clip, embed_stage.Outputs(tmp_path / "e.parquet"))
    assert pq.read_table(tmp_path / "e.parquet").column("object_caption_embedding").to_pylist() == [None]


def object_shards(tmp_path, object_captions: list) -> tuple[str, str]:
    """A triplet shard and its embedding shard: object i's kept caption embedding is e_i, its object caption's
    10 * e_i (None: no object caption and no embedding)."""
    points, dim = 16, 8
    rng = np.random.default_rng(0)
    triplets = [
        {
            "uid": f"u{i}",
            "category": "mug",
            "xyz": rng.normal(size=(points, 3)).astype(np.float32).tolist(),
            "rgb": rng.integers(0, 256, size=(points, 3)).tolist(),
            "views": [0],
            "kept": [[f"view caption {i}"]],
            "object_caption": caption,
        }
        for i, caption in enumerate(object_captions)
    ]
    eye = np.eye(dim, dtype=np.float32)
    embeds = [
        {
            "uid": f"u{i}",
            "views": [0],
            "image_embeddings": [(-eye[i]).tolist()],
            "caption_views": [0],
            "captions": [f"view caption {i}"],
            "caption_embeddings": [eye[i].tolist()],
            "object_caption_embedding": (10 * eye[i]).tolist() if caption else None,
        }
        for i, caption in enumerate(object_captions)
    ]
    write_parquet(pa.Table.from_pylist(triplets, schema=triplet_schema(points)), tmp_path / "t.parquet", {})
    write_parquet(pa.Table.from_pylist(embeds, schema=EMBED_SCHEMA), tmp_path / "e.parquet", {})
    return str(tmp_path / "t.parquet"), str(tmp_path / "e.parquet")


def test_the_loader_gives_each_sample_its_objects_caption_and_embedding(tmp_path):
    triplets, embeds = object_shards(tmp_path, ["object 0", None, "object 2"])
    dataset = TripletDataset([triplets], [embeds], num_points=16, batch_size=3, shuffle_buffer=3, object_captions=True)
    (batch,) = list(dataset.epoch(0))
    order = [int(u[1:]) for u in batch["uid"]]
    assert batch["object_caption"] == [{0: "object 0", 1: "", 2: "object 2"}[i] for i in order]
    for row, i in enumerate(order):
        scale = 1.0 if i == 1 else 10.0  # without an object caption: the view caption's embedding
        assert torch.equal(batch["object_text_embedding"][row], scale * torch.eye(8)[i])
        assert torch.equal(batch["text_embedding"][row], torch.eye(8)[i])
    plain = TripletDataset([triplets], [embeds], num_points=16, batch_size=3, shuffle_buffer=3)
    assert "object_caption" not in next(iter(plain.epoch(0)))


def text_source_stub(text_source: str, towers: str = "precomputed"):
    section = {**default_config()["train"], "text_source": text_source, "towers": towers}
    return SimpleNamespace(
        settings=TrainSettings.from_config(section), categories=[], category_features=None, device=CPU, clip=None
    )


def object_batch(n: int = 16) -> dict:
    return {
        "uid": [f"u{i}" for i in range(n)],
        "category": ["mug"] * n,
        "caption": [f"view {i}" for i in range(n)],
        "object_caption": [f"object {i}" for i in range(n)],
        "text_embedding": torch.eye(n),
        "object_text_embedding": 10 * torch.eye(n),
    }


def test_text_source_object_trains_on_the_object_captions():
    generator = random.Random(5)
    state = generator.getstate()
    targets = Trainer.text_targets(text_source_stub("object"), object_batch(), generator)
    assert torch.equal(targets, 10 * torch.eye(16))
    assert generator.getstate() == state  # nothing drawn


def test_text_source_view_or_object_draws_each_samples_text_from_the_text_generator():
    targets = Trainer.text_targets(text_source_stub("view_or_object"), object_batch(), random.Random(5))
    reference = random.Random(5)
    expected = [reference.random() < OBJECT_CAPTION_PROB for _ in range(16)]
    assert 0 < sum(expected) < 16
    assert [bool(row.max() == 10) for row in targets] == expected
    assert torch.equal(targets.argmax(-1), torch.arange(16))
    replay = Trainer.text_targets(text_source_stub("view_or_object"), object_batch(), random.Random(5))
    assert torch.equal(replay, targets)  # the same generator state, the same texts: a resumed run matches


def test_online_towers_encode_the_object_caption(monkeypatch):
    from ulip2_pipeline.train import trainer

    encoded = []
    monkeypatch.setattr(
        trainer, "encode_texts", lambda clip, texts: encoded.append(texts) or torch.zeros(len(texts), 4)
    )
    batch = {**object_batch(2), "object_caption": ["object 0", ""]}
    Trainer.text_targets(text_source_stub("object", towers="online"), batch, random.Random(0))
    assert encoded[-1] == ["object 0", "view 1"]  # without an object caption: the view's


@pytest.mark.parametrize("source", ["object", "view_or_object"])
def test_object_text_sources_are_refused_without_the_fuse_stage(source):
    with pytest.raises(ConfigError, match=r"key 'train\.text_source'.*key 'fuse\.enabled'"):
        default_config(train={"text_source": source})
    assert default_config(train={"text_source": source}, fuse={"enabled": True})["train"]["text_source"] == source


def test_the_text_source_is_in_the_runs_fingerprint():
    section = {**default_config()["train"], "text_source": "view_or_object"}
    assert TrainSettings.from_config(section).as_params()["text_source"] == "view_or_object"


# --- end to end -------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_snakemake_fuses_the_demo_and_the_triplets_and_embeddings_carry_it(tmp_path):
    config = write_config(tmp_path, objects_per_class=1, broken_objects=0)
    config["caption"].update(num_captions=2, max_new_tokens=12)
    config["fuse"] = {"enabled": True, "model": "results/models/tiny-qwen2-instruct", "batch_size": 4}
    config["train"]["text_source"] = "object"
    validate_config(json.loads(json.dumps(config)))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "embed")
    results = tmp_path / "results" / "demo"
    fused = pq.read_table(results / "fused" / "00000.parquet").to_pylist()
    triplets = pq.read_table(results / "triplets" / "00000.parquet").to_pylist()
    assert len(fused) == len(triplets) > 0
    by_uid = {r["uid"]: r for r in fused}
    for row in triplets:
        assert row["object_caption"] == by_uid[row["uid"]]["object_caption"]
        assert by_uid[row["uid"]]["view_captions"] == [k for view in row["kept"] for k in view if k]
    assert any(r["fusion"] == "model" for r in fused)
    meta = metadata(results / "triplets" / "00000.parquet")
    assert json.loads(meta["ulip2.fusion"])["ran"] is True
    assert json.loads(meta["ulip2.provenance"])["fuse_model"] == "results/models/tiny-qwen2-instruct"
    embeddings = pq.read_table(results / "embed" / "tiny-clip" / "00000.parquet").to_pylist()
    assert all(len(r["object_caption_embedding"]) > 0 for r in embeddings)
    log = (tmp_path / "logs" / "demo" / "fuse" / "00000.log").read_text()
    assert "loaded results/models/tiny-qwen2-instruct on cpu" in log
    again = snakemake(tmp_path, "embed")
    assert "Nothing to be done" in again.stdout + again.stderr
