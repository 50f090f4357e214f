"""A model that cannot run at all fails the job; views that fail for their own reasons stay failure rows."""

import pytest
import torch
from stand_ins import caption_cfg, png, stand_ins, write_render_shard  # noqa: F401 - fixture

from ulip2_pipeline.failures import Failure
from ulip2_pipeline.models.captioners import Captioner
from ulip2_pipeline.stages import caption as caption_stage
from ulip2_pipeline.stages.model_stage import ModelCannotRun, process_views
from ulip2_pipeline.stages.views import View

MODEL = "results/models/tiny-t5"
T5_ERROR = "'T5Config' object has no attribute 'bos_token_id'"


def views(n: int) -> list[View]:
    return [View(f"uid{i:02d}", i % 3, b"") for i in range(n)]


def run(items, work, batch_size=4):
    return process_views(items, work, batch_size, "caption", "00000", "render.parquet", model=MODEL)


def reasons(failed: list[Failure]) -> list[tuple[str, str]]:
    return [(f.uid, f.reason) for f in failed]


def test_every_view_of_the_first_batch_failing_alone_alike_stops_the_job_naming_the_model():
    calls = []

    def work(batch):
        calls.append(len(batch))
        raise AttributeError(T5_ERROR)

    with pytest.raises(ModelCannotRun) as raised:
        run(views(10), work)
    message = str(raised.value)
    assert message == (
        f"caption: model {MODEL} cannot run: every view of the first batch (4) failed alone "
        f"with AttributeError: {T5_ERROR}; no view was written"
    )
    assert isinstance(raised.value.__cause__, AttributeError)
    assert str(raised.value.__cause__) == T5_ERROR
    assert calls == [4, 1, 1, 1, 1]  # stopped after the first batch: the rest of the shard is not tried


@pytest.mark.parametrize(
    "errors",
    [
        [KeyError("no such view"), ValueError("bad pixels")],  # types and messages differ
        [ValueError("image 64x64 too small"), ValueError("image 32x32 too small")],  # only the messages
        [ValueError("bad input"), TypeError("bad input")],  # only the types
    ],
)
def test_different_errors_in_the_first_batch_are_the_datas_failure_rows(errors):
    def work(batch):
        if len(batch) > 1:
            raise ValueError("the batch failed")
        raise errors[int(batch[0].uid[3:]) % 2]

    done, failed = run(views(6), work)
    assert done == []
    assert reasons(failed) == [(f"uid{i:02d}", "model_error") for i in range(6)]
    assert failed[0].detail == f"view 0: {type(errors[0]).__name__}: {errors[0]}"
    assert failed[1].detail == f"view 1: {type(errors[1]).__name__}: {errors[1]}"


def test_a_first_batch_that_partly_works_keeps_later_failures_as_rows():
    def work(batch):
        if any(int(v.uid[3:]) in (1, 2, 3) or int(v.uid[3:]) >= 4 for v in batch):
            raise AttributeError(T5_ERROR)
        return [v.uid for v in batch]

    done, failed = run(views(10), work)
    assert [result for _, result in done] == ["uid00"]
    assert reasons(failed) == [(f"uid{i:02d}", "model_error") for i in range(1, 10)]


def test_out_of_memory_on_every_view_stays_rows():
    def work(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    done, failed = run(views(5), work)
    assert done == []
    assert reasons(failed) == [(f"uid{i:02d}", "out_of_memory") for i in range(5)]


def test_out_of_memory_as_a_runtime_error_stays_rows_too():
    def work(batch):
        raise RuntimeError("HIP out of memory on the device")

    done, failed = run(views(3), work, batch_size=3)
    assert reasons(failed) == [(f"uid{i:02d}", "out_of_memory") for i in range(3)]


def test_a_shard_of_one_failing_view_is_a_row_not_a_stopped_job():
    def work(batch):
        raise AttributeError(T5_ERROR)

    done, failed = run(views(1), work)
    assert done == []
    assert reasons(failed) == [("uid00", "model_error")]


def test_with_batches_of_one_the_second_view_decides():
    def failing(batch):
        raise AttributeError(T5_ERROR)

    with pytest.raises(ModelCannotRun, match=r"every view of the first 2 batches \(2\) failed alone with Attr"):
        run(views(5), failing, batch_size=1)

    def first_view_bad(batch):
        if batch[0].uid == "uid00":
            raise AttributeError(T5_ERROR)
        return [v.uid for v in batch]

    done, failed = run(views(3), first_view_bad, batch_size=1)
    assert [result for _, result in done] == ["uid01", "uid02"]
    assert reasons(failed) == [("uid00", "model_error")]


def test_a_caption_model_that_always_fails_stops_the_shard_and_writes_nothing(tmp_path, stand_ins, monkeypatch):
    render = write_render_shard(
        tmp_path / "render.parquet",
        [("a", 0, png((255, 0, 0))), ("a", 1, png((0, 255, 0))), ("b", 0, png((0, 0, 255)))],
    )

    def broken_caption(captioner, images, seeds, settings):
        raise AttributeError(T5_ERROR)

    monkeypatch.setattr(Captioner, "caption", broken_caption)
    cfg = caption_cfg(stand_ins, batch_size=4)
    outputs = caption_stage.Outputs(tmp_path / "c.parquet", tmp_path / "cf.parquet")
    with pytest.raises(ModelCannotRun) as raised:
        caption_stage.run_shard(caption_stage.Inputs(render, "00000"), cfg, outputs)
    assert str(raised.value).startswith(f"caption: model {cfg.model} cannot run: every view of the first batch (3)")
    assert isinstance(raised.value.__cause__, AttributeError)
    assert not (tmp_path / "c.parquet").exists()
    assert not (tmp_path / "cf.parquet").exists()
