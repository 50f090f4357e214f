import logging

from ulip2_pipeline.progress import Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_lines_come_at_a_bounded_interval_with_rate_and_time_left(caplog):
    clock = Clock()
    progress = Progress("render 00003", 100, interval_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="ulip2_pipeline.progress"):
        for _ in range(100):
            clock.now += 2.0  # 0.5 objects per second
            progress.advance()
    lines = [r.getMessage() for r in caplog.records]
    # the first object, then every 30 s of 200 s (6 more), then the last
    assert len(lines) == 8
    assert lines[0] == "render 00003: 1/100 objects (1.0%), 0.50 objects/s, about 3 min 18 s left"
    assert lines[-1] == "render 00003: 100/100 objects (100.0%), 0.50 objects/s, done in 3 min 20 s"


def test_units_and_an_empty_job(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="ulip2_pipeline.progress"):
        Progress("caption 00000", 0, unit="views", clock=clock).advance(0)
    assert caplog.records[0].getMessage().startswith("caption 00000: 0/0 views")


def test_batched_model_work_reports_progress_per_batch(caplog):
    from ulip2_pipeline.devices import run_in_batches

    clock = Clock()
    progress = Progress("rank 00001", 10, unit="views", interval_s=0, clock=clock)
    with caplog.at_level(logging.INFO, logger="ulip2_pipeline.progress"):
        assert run_in_batches(list(range(10)), lambda b: [x + 1 for x in b], 4, progress=progress) == list(range(1, 11))
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "rank 00001: 4/10 views (40.0%)",
        "rank 00001: 8/10 views (80.0%)",
        "rank 00001: 10/10 views (100.0%)",
    ]
