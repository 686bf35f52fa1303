"""The command line: `python -m cloce train` / `predict`, on the real backbone and real data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloce.data.dataset import default_data_dir

SEMEVAL = default_data_dir()
needs_semeval = pytest.mark.skipif(not (SEMEVAL / "train.txt").exists(), reason=f"SemEval not found at {SEMEVAL}")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloce", *args], capture_output=True, text=True, timeout=900)


def write_slice(source: Path, target: Path, every: int) -> None:
    lines = source.read_text().splitlines()
    target.write_text("\n".join(lines[::every]) + "\n")


@pytest.mark.slow
@needs_semeval
def test_train_then_predict_on_the_real_backbone(tmp_path):
    """Smoke test: real all-MiniLM-L6-v2, a slice of SemEval, 1 epoch of CLoCE-D."""
    data = tmp_path / "data"
    data.mkdir()
    write_slice(SEMEVAL / "train.txt", data / "train.txt", 2)
    write_slice(SEMEVAL / "val.txt", data / "val.txt", 30)
    write_slice(SEMEVAL / "test.txt", data / "test.txt", 50)
    (data / "rel2id.json").write_text((SEMEVAL / "rel2id.json").read_text())
    out = tmp_path / "run"
    trained = run_cli("train", "--data-dir", str(data), "--variant", "cloce_d", "--k", "2", "--epochs", "1",
                      "--output-dir", str(out), "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert "test micro-F1" in trained.stdout and "SemEval macro-F1" in trained.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert history[0]["pairs"]["train_correct"] + history[0]["pairs"]["train_error"] == 36  # K=2 x 18 labels
    params = json.loads((out / "params.json").read_text())
    assert params["generic_type_only"] is True and params["mlm_head_pretrained"] is False
    assert len(json.loads((out / "kshot_sample.json").read_text())["ids"]) == 36

    predicted = run_cli("predict", "--checkpoint", str(out / "checkpoint"), "--input", str(data / "test.txt"),
                        "--output", str(tmp_path / "pred.jsonl"))
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    correct = sum(r["predicted"] == r["relation"] for r in rows)
    test_eval = json.loads((out / "test_eval.json").read_text())
    assert correct / len(rows) == pytest.approx(test_eval["accuracy"])
    assert metrics["test_micro_f1"] == test_eval["micro_f1"]


def test_bad_data_line_is_reported_with_file_and_line(tmp_path):
    good = '{"token": ["a", "b"], "h": {"name": "a", "pos": [0, 1]}, "t": {"name": "b", "pos": [1, 2]}, "relation": "Other"}'
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.txt").write_text(good + "\n")
    (tmp_path / "val.txt").write_text(good + "\n" + '{"token": ["a"' + "\n")
    result = run_cli("train", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 2
    assert f"{tmp_path / 'val.txt'}, line 2" in result.stderr and "malformed JSON" in result.stderr
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_bad_hyper_parameter_names_the_field(tmp_path):
    result = run_cli("train", "--lr", "-1", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2 and "lr: must be > 0" in result.stderr


def test_help_explains_each_flag():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for flag in ("--variant", "--k ", "--margin", "--cl-lr", "--model", "--data-dir", "--output-dir"):
        assert flag in result.stdout
