"""Checkpoints round-trip through safetensors + JSON, and load nothing else."""
from __future__ import annotations

import json

import pytest

from cloce.checkpoint import WEIGHTS, CheckpointError, load_checkpoint, save_checkpoint
from cloce.predict import predict_file
from cloce.train import train
from tests.test_train_loop import tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def trained(tiny_bert_config):
    return train(tiny_config(variant="cloce_s", epochs=1), tiny_dataset(), backbone_config=tiny_bert_config)


def _write_test_file(path, dataset):
    with open(path, "w") as sink:
        for inst in dataset.test:
            record = {"token": list(inst.tokens), "h": {"name": " ".join(inst.head_tokens), "pos": [inst.head.start, inst.head.end]},
                      "t": {"name": " ".join(inst.tail_tokens), "pos": [inst.tail.start, inst.tail.end]}, "relation": inst.relation}
            sink.write(json.dumps(record) + "\n")


def test_predict_from_checkpoint_equals_in_training_predictions(trained, tmp_path):
    save_checkpoint(trained.pipeline, tmp_path / "ckpt")
    _write_test_file(tmp_path / "test.txt", tiny_dataset())
    rows = predict_file(tmp_path / "ckpt", tmp_path / "test.txt", tmp_path / "out.jsonl")
    labels = trained.pipeline.label_map.labels
    assert [r["predicted"] for r in rows] == [labels[i] for i in trained.test_predictions]
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == rows
    assert all(0.0 < r["score"] <= 1.0 and "token" in r and "relation" in r for r in rows)


@pytest.mark.parametrize("variant, extra", [("finetune", {}), ("prompt", {"sentence_markers": True})])
def test_checkpoint_round_trip(variant, extra, tiny_bert_config, tmp_path):
    result = train(tiny_config(variant=variant, epochs=1, **extra), tiny_dataset(), backbone_config=tiny_bert_config)
    save_checkpoint(result.pipeline, tmp_path / "ckpt")
    _write_test_file(tmp_path / "test.txt", tiny_dataset())
    rows = predict_file(tmp_path / "ckpt", tmp_path / "test.txt", None)
    assert [r["predicted"] for r in rows] == [result.pipeline.label_map.labels[i] for i in result.test_predictions]
    assert load_checkpoint(tmp_path / "ckpt").template.__dict__.get("sentence_markers", False) == bool(extra)


def test_unlabelled_input_is_predicted(trained, tmp_path):
    save_checkpoint(trained.pipeline, tmp_path / "ckpt")
    (tmp_path / "in.txt").write_text(json.dumps(
        {"token": ["the", "fire", "caused", "smoke"], "h": {"name": "fire", "pos": [1, 2]}, "t": {"name": "smoke", "pos": [3, 4]}}) + "\n")
    rows = predict_file(tmp_path / "ckpt", tmp_path / "in.txt", None)
    assert rows[0]["predicted"] in trained.pipeline.label_map.labels and "relation" not in rows[0]


def test_truncated_weights_give_a_clear_error(trained, tmp_path):
    save_checkpoint(trained.pipeline, tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path / "ckpt")


class _CreatesFileWhenUnpickled:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_file_is_never_loaded(trained, tmp_path):
    """Weights replaced by a pickle that would run code on load: refused, never unpickled."""
    import pickle

    save_checkpoint(trained.pipeline, tmp_path / "ckpt")
    marker = tmp_path / "unpickled"
    (tmp_path / "ckpt" / WEIGHTS).write_bytes(pickle.dumps(_CreatesFileWhenUnpickled(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "ckpt")
    assert not marker.exists()


def test_missing_or_malformed_config(trained, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path)
    save_checkpoint(trained.pipeline, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "cloce_checkpoint.json").write_text('{"variant": ')
    with pytest.raises(CheckpointError, match="line 1: malformed JSON"):
        load_checkpoint(tmp_path / "ckpt")
