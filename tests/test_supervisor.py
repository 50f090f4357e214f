"""The supervised worker: timeouts, memory, crashes and errors cost one task, never the caller."""

import os
import sys
import textwrap

import pytest

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.supervisor import SupervisedWorker, describe_exit, log_tail

FAKE_WORKER = textwrap.dedent("""
    import os, signal, time
    from ulip2_pipeline.failures import ObjectFailure
    from ulip2_pipeline.supervisor import main

    def setup(hello):
        def handle(task):
            kind = task["kind"]
            if kind == "echo":
                print("working on", task["value"], flush=True)
                return {"value": task["value"], "pid": os.getpid(), "greeting": hello["greeting"]}
            if kind == "hang":
                time.sleep(3600)
            if kind == "hog":  # touch every page so the memory is resident
                blocks = [bytearray(b"x" * (1 << 20)) for _ in range(task["mb"])]
                time.sleep(3600)
            if kind == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            if kind == "fail":
                raise ObjectFailure("unreadable", "not a mesh")
            if kind == "bug":
                return 1 / 0
        return handle

    if __name__ == "__main__":
        main(setup)
""")


@pytest.fixture
def worker(tmp_path):
    (tmp_path / "fake_worker.py").write_text(FAKE_WORKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    w = SupervisedWorker("fake_worker", {"greeting": "hi"}, activity="the fake task", max_memory_mb=300, env=env)
    yield w
    w.stop()


def call_failure(worker, task, timeout_s=30.0):
    with pytest.raises(ObjectFailure) as info:
        worker.call(task, timeout_s)
    return info.value


def test_one_worker_serves_tasks_until_a_kill_then_a_fresh_one_takes_over(worker, tmp_path):
    first = worker.call({"kind": "echo", "value": 1, "log": str(tmp_path / "one.log")}, 30)
    second = worker.call({"kind": "echo", "value": 2}, 30)
    assert first["greeting"] == "hi"
    assert first["pid"] == second["pid"]
    assert len(worker.startups) == 1
    assert (tmp_path / "one.log").read_text() == "working on 1\nworking on 2\n"  # output follows the task's log

    failure = call_failure(worker, {"kind": "hang"}, timeout_s=1.0)
    assert failure.reason == "timeout"
    assert "the fake task took longer than 1 s" in failure.detail
    third = worker.call({"kind": "echo", "value": 3}, 30)
    assert third["pid"] != first["pid"]
    assert len(worker.startups) == 2


def test_memory_over_the_limit_kills_the_worker(worker):
    failure = call_failure(worker, {"kind": "hog", "mb": 600})
    assert failure.reason == "out_of_memory"
    assert "over the limit of 300 MB" in failure.detail
    assert 300 < worker.peak_rss_mb < 1000
    assert worker.call({"kind": "echo", "value": 4}, 30)["value"] == 4


def test_a_crash_is_reported_and_the_next_task_gets_a_fresh_worker(worker):
    failure = call_failure(worker, {"kind": "crash"})
    assert failure.reason == "worker_crashed"
    assert "SIGSEGV" in failure.detail
    assert worker.call({"kind": "echo", "value": 5}, 30)["value"] == 5


def test_failures_and_bugs_come_back_without_losing_the_worker(worker):
    worker.call({"kind": "echo", "value": 0}, 30)
    pid = worker.process.pid
    assert call_failure(worker, {"kind": "fail"}).reason == "unreadable"
    bug = call_failure(worker, {"kind": "bug"})
    assert bug.reason == "internal_error"
    assert "ZeroDivisionError" in bug.detail
    assert worker.call({"kind": "echo", "value": 6}, 30)["pid"] == pid


def test_exit_descriptions():
    assert describe_exit(3) == "exit status 3"
    assert "SIGKILL" in describe_exit(-9)
    assert "out-of-memory killer" in describe_exit(-9)


def test_a_tasks_output_goes_to_its_log_and_its_tail_can_be_quoted(worker, tmp_path):
    log = tmp_path / "task.log"
    worker.call({"kind": "echo", "value": 7, "log": str(log)}, 30)
    assert log_tail(log, 1000).strip() == "working on 7"
    assert log_tail(log, 2) == "7\n"
    assert log_tail(tmp_path / "missing.log", 1000) == ""
