"""The command line: `python -m cloce train` / `predict`, on the real backbone and real data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloce.data.dataset import default_data_dir
from tests.conftest import TINY_ROWS

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
    # The saved checkpoint's predictions, scored by hand against the data's gold labels, give
    # the test micro-F1 that training reported.
    gold = [json.loads(line)["relation"] for line in (data / "test.txt").read_text().splitlines()]
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert len(rows) == len(gold)
    assert micro_f1_by_hand(gold, [r["predicted"] for r in rows], no_relation="Other") == pytest.approx(
        metrics["test_micro_f1"], abs=1e-9)


def micro_f1_by_hand(gold: list[str], predicted: list[str], no_relation: str) -> float:
    """TACRED's micro-F1: predicting the no-relation label is no guess, gold no-relation nothing to find."""
    hits = sum(g == p != no_relation for g, p in zip(gold, predicted, strict=True))
    guesses = sum(p != no_relation for p in predicted)
    relevant = sum(g != no_relation for g in gold)
    precision, recall = hits / guesses if guesses else 0.0, hits / relevant if relevant else 0.0
    return 2 * precision * recall / (precision + recall) if hits else 0.0


# ---- in process, on a tiny random BERT and the nine hand-made sentences of tests/conftest.py


def write_tiny_data(directory: Path) -> Path:
    """The nine sentences as OpenNRE jsonl, the same in train, val and test."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"s{i}", "token": text.split(), "h": {"name": "h", "pos": list(head)},
                         "t": {"name": "t", "pos": list(tail)}, "relation": relation})
             for i, (text, head, tail, relation) in enumerate(TINY_ROWS)]
    for split in ("train", "val", "test"):
        (directory / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture(scope="module")
def full_data_run(tmp_path_factory, tiny_model_dir):
    """`train --k 0`: one epoch of CLoCE-D on every training sentence."""
    from cloce.cli import main

    root = tmp_path_factory.mktemp("full_data")
    data, out = write_tiny_data(root / "data"), root / "run"
    code = main(["train", "--data-dir", str(data), "--model", tiny_model_dir, "--variant", "cloce_d", "--k", "0",
                 "--epochs", "1", "--batch-size", "4", "--max-seq-len", "64", "--num-threads", "1",
                 "--output-dir", str(out), "--no-progress"])
    assert code == 0
    return data, out


def test_k_0_trains_on_the_full_training_set(full_data_run):
    data, out = full_data_run
    history = json.loads((out / "history.json").read_text())
    assert history[0]["pairs"]["train_correct"] + history[0]["pairs"]["train_error"] == len(TINY_ROWS)
    assert json.loads((out / "params.json").read_text())["train_config"]["k"] is None
    assert json.loads((out / "metrics.json").read_text())["k"] is None
    assert not (out / "kshot_sample.json").exists()  # nothing sampled


def predict(capsys, *args: str) -> tuple[int, str, str]:
    from cloce.cli import main

    code = main(["predict", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_writes_jsonl_to_stdout_without_output(full_data_run, capsys, tmp_path):
    data, out = full_data_run
    code, stdout, _ = predict(capsys, "--checkpoint", str(out / "checkpoint"), "--input", str(data / "test.txt"))
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    inputs = [json.loads(line) for line in (data / "test.txt").read_text().splitlines()]
    assert [{k: v for k, v in row.items() if k not in ("predicted", "score")} for row in rows] == inputs
    labels = {relation for *_, relation in TINY_ROWS}
    assert all(row["predicted"] in labels and 0.0 < row["score"] <= 1.0 for row in rows)

    code, stdout, stderr = predict(capsys, "--checkpoint", str(out / "checkpoint"), "--input",
                                   str(data / "test.txt"), "--output", str(tmp_path / "pred.jsonl"))
    assert code == 0 and stdout == "" and f"{len(rows)} predictions written" in stderr
    assert [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()] == rows


def test_predict_batch_size_sets_the_batches_and_not_the_predictions(full_data_run, capsys, monkeypatch):
    from cloce.model import PromptRelationModel

    data, out = full_data_run
    batch_sizes = []
    forward = PromptRelationModel.forward

    def spy(self, batch, output="logits"):
        batch_sizes.append(len(batch["input_ids"]))
        return forward(self, batch, output)

    monkeypatch.setattr(PromptRelationModel, "forward", spy)
    runs = {}
    for size in ("2", "64"):
        batch_sizes.clear()
        code, stdout, _ = predict(capsys, "--checkpoint", str(out / "checkpoint"), "--input", str(data / "test.txt"),
                                  "--batch-size", size)
        assert code == 0
        runs[size] = ([json.loads(line) for line in stdout.splitlines()], list(batch_sizes))
    assert runs["2"][1] == [2, 2, 2, 2, 1] and runs["64"][1] == [9]
    small, large = runs["2"][0], runs["64"][0]
    assert [r["predicted"] for r in small] == [r["predicted"] for r in large]
    assert [r["score"] for r in small] == pytest.approx([r["score"] for r in large], abs=1e-4)


def test_predict_reads_the_format_it_is_told(full_data_run, capsys):
    data, out = full_data_run
    args = ("--checkpoint", str(out / "checkpoint"), "--input", str(data / "test.txt"))
    auto, told = predict(capsys, *args), predict(capsys, *args, "--format", "opennre")
    assert auto[0] == told[0] == 0 and auto[1] == told[1]
    code, stdout, stderr = predict(capsys, *args, "--format", "tacred")  # OpenNRE records read as TACRED
    assert code == 2 and stdout == ""
    assert f"{data / 'test.txt'}, line 1" in stderr and "subj_start" in stderr


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


@pytest.mark.parametrize("flags, expected", [((), None), (("--sentence-markers",), True),
                                             (("--no-sentence-markers",), False)])
def test_sentence_markers_unset_leaves_the_choice_to_the_labels(flags, expected):
    from cloce.cli import build_parser

    args = build_parser().parse_args(["train", *flags])
    assert args.sentence_markers is expected
