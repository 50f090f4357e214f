"""Concurrent GPU jobs on one host each claim their own device (a fake device list stands in)."""

import subprocess
import sys
import textwrap

CLAIM = textwrap.dedent("""
    import sys, time
    from ulip2_pipeline.devices import claim_device
    index = claim_device(sys.argv[2].split(","), lock_dir=sys.argv[1], wait_s=30)
    print(index, flush=True)
    time.sleep(float(sys.argv[3]))
""")


def test_concurrent_jobs_get_distinct_devices(tmp_path):
    gpus = "GPU-aaaa,GPU-bbbb,GPU-cccc"
    jobs = [
        subprocess.Popen([sys.executable, "-c", CLAIM, str(tmp_path), gpus, "3"], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    claimed = [int(job.stdout.readline()) for job in jobs]
    for job in jobs:
        job.wait(timeout=30)
    assert sorted(claimed) == [0, 1, 2]


def test_a_device_is_free_again_when_its_job_ends(tmp_path):
    first = subprocess.run(
        [sys.executable, "-c", CLAIM, str(tmp_path), "GPU-only", "0"], capture_output=True, text=True, check=True
    )
    second = subprocess.run(
        [sys.executable, "-c", CLAIM, str(tmp_path), "GPU-only", "0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert first.stdout.strip() == second.stdout.strip() == "0"
