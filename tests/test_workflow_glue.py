"""The glue every workflow script uses: job logs and the split of output settings from throughput knobs."""

import subprocess
import sys

from ulip2_pipeline.workflow import job_settings, output_settings


def test_throughput_knobs_are_not_output_settings():
    section = {"model": "m", "seed": 1, "batch_size": 8, "threads": 2, "device": "auto", "workers": 3}
    assert output_settings(section) == {"model": "m", "seed": 1}
    assert output_settings(section, keep=("batch_size",)) == {"model": "m", "seed": 1, "batch_size": 8}
    assert job_settings(output_settings(section), section) == section


def _job(log, code):
    script = f"from ulip2_pipeline.workflow import log_to\nlog_to({str(log)!r})\n{code}\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_a_failed_job_leaves_its_traceback_in_its_own_log_and_retries_append(tmp_path):
    log = tmp_path / "logs" / "job.log"
    first = _job(
        log, "import logging; logging.getLogger('x').warning('obj-17: unreadable')\nraise ValueError('boom in obj-17')"
    )
    assert first.returncode != 0
    log.unlink()  # Snakemake deletes a job's log before every attempt
    second = _job(log, "pass")
    assert second.returncode == 0
    text = log.read_text()
    assert text.count("===== attempt started") == 2
    assert "obj-17: unreadable" in text
    assert "Traceback" in text and "ValueError: boom in obj-17" in text
