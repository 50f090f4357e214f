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
            clock.now += 2.0   # 0.5 objects per second
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
