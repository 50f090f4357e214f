"""The GPU suite's smoke run: every part runs on the CPU with the stand-ins and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_the_gpu_suite_smoke_run_reports_every_part():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    suite = json.loads(result.stdout)
    parts = suite["parts"]
    families = ("blip2-t5", "instructblip-vicuna", "instructblip-t5", "chat-vlm")
    assert set(parts) == {"caption_rank", "embed", "encode", "train", "render"} | {f"caption_{f}" for f in families}
    assert not [name for name, part in parts.items() if "error" in part]
    assert [b["batch"] for b in parts["caption_rank"]["batches"]] == [1, 2]
    assert all(b["images_per_s"] > 0 and b["views_ranked_per_s"] > 0 for b in parts["caption_rank"]["batches"])
    for family in families:
        assert parts[f"caption_{family}"]["family"] == family
        assert all(b["images_per_s"] > 0 for b in parts[f"caption_{family}"]["batches"])
    assert parts["embed"]["objects_per_s"] > 0
    assert [m["model"] for m in parts["encode"]["models"]] == ["ulip2", "openshape_pointbert"]
    assert all(m["clouds_per_s"] > 0 for m in parts["encode"]["models"])
    assert [r["size"] for r in parts["train"]["results"]] == ["tiny", "openshape_tiny"]
    assert "skipped" in parts["render"]


def test_a_part_that_fails_is_reported_not_fatal(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_suite

    monkeypatch.setattr(gpu_suite, "HERE", tmp_path)
    (tmp_path / "broken.py").write_text("import sys\nprint('starting')\nsys.exit('no GPU kernel for this')\n")
    (tmp_path / "fine.py").write_text("import json\nprint('log line')\nprint(json.dumps({'x': 1}, indent=2))\n")
    assert gpu_suite.run_part(["broken.py"], 30)["error"] == "exit 1: no GPU kernel for this"
    assert gpu_suite.run_part(["fine.py"], 30)["x"] == 1
