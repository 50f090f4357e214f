"""The glue every workflow script uses: job logs (settings: test_settings.py)."""

import subprocess
import sys


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
    assert "Traceback" in text
    assert "ValueError: boom in obj-17" in text
