"""benchmarks/gpu_check.sh stays ready for a GPU: its dry run takes every step on the CPU
with a tiny model and data, and writes the table."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.test_study_e2e import study_env

pytestmark = pytest.mark.slow  # starts a Ray study

REPO = Path(__file__).resolve().parents[1]


def test_the_dry_run_takes_every_step_and_writes_one_table(tiny_model_dir, tiny_semeval_dir, tmp_path):
    import sys

    env = study_env() | {"OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--model", str(tiny_model_dir),
                           "--data-dir", str(tiny_semeval_dir)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert not [name for name, result in results.items() if "error" in result], results
    assert results["1. CE pass prompt_ki vs HF Trainer (same batches), samples/s"]["ratio"] > 0
    assert results["2. predict vs bare forward, samples/s"]["ratio"] > 0
    compiled = [result for name, result in results.items() if name.startswith("5. CE epoch eager vs compiled")]
    assert [r["variant"] for r in compiled] == ["prompt_ki", "finetune"] and all(r["ratio"] > 0 for r in compiled)
    # The compiled encoder learns as the eager one does: same weights, same batches, and (dry
    # run) the same dropout masks, so the two epoch losses agree to float rounding. The suite's
    # one compiled run of the marker path (finetune), and prompt_ki's CE pass.
    for result in compiled:
        assert result["compiled_train_loss"] == pytest.approx(result["eager_train_loss"], rel=1e-4), result
    study = next(result for name, result in results.items() if name.startswith("4. study"))
    assert study["exit"] == 0 and study["trials_done"] >= 1
    assert "| check | result |" in (tmp_path / "out" / "gpu_check.md").read_text()
