"""Masked-LM adaptation before prompt-tuning, on tiny random BERTs and a dozen sentences."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cloce.backbone import load_masked_lm
from cloce.config import ConfigError, MlmAdaptConfig, TrainConfig
from cloce.data.dataset import Dataset
from cloce.data.types import LabelMap
from cloce.mlm_adapt import (
    INFO_FILE, adapt_backbone, adapted_dir, masked_lm_loss, sentences_digest, tokenize_sentences,
)
from cloce.train import train
from tests.conftest import TINY_ROWS, make_instance

ROWS = TINY_ROWS
SENTENCES = [tuple(text.split()) for text, *_ in ROWS]
QUICK = MlmAdaptConfig(steps=4, batch_size=4, max_length=32)


def weights(directory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def fixed_masked_batch(tokenizer, seed: int = 0) -> dict[str, torch.Tensor]:
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=seed)
    return collator(tokenize_sentences(tokenizer, SENTENCES, 32))


@torch.no_grad()
def mlm_loss_of(directory: str, batch) -> float:
    loaded = load_masked_lm(directory)
    loaded.model.eval()
    return masked_lm_loss(loaded.model, loaded.head_name, batch).item()


def test_adaptation_lowers_the_mlm_loss_on_its_sentences(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    adapted = adapt_backbone(tiny_model_dir, SENTENCES, MlmAdaptConfig(steps=40, lr=2e-3, batch_size=3), tmp_path)
    assert not adapted.reused and adapted.info["loss_last"] < adapted.info["loss_first"]
    batch = fixed_masked_batch(AutoTokenizer.from_pretrained(tiny_model_dir))
    before, after = mlm_loss_of(tiny_model_dir, batch), mlm_loss_of(str(adapted.path), batch)
    assert after < before - 0.5, (before, after)  # 10.3 -> 8.9 when written


def test_the_loss_at_masked_positions_only_is_the_models_own_loss(tiny_model_dir):
    from transformers import AutoTokenizer

    loaded = load_masked_lm(tiny_model_dir)
    loaded.model.eval()
    batch = fixed_masked_batch(AutoTokenizer.from_pretrained(tiny_model_dir))
    with torch.no_grad():
        assert masked_lm_loss(loaded.model, loaded.head_name, batch).item() == pytest.approx(
            loaded.model(**batch).loss.item(), rel=1e-5)


def test_a_second_call_reuses_the_cache_without_training(tiny_model_dir, tmp_path, monkeypatch):
    first = adapt_backbone(tiny_model_dir, SENTENCES, QUICK, tmp_path)
    written = {p.name: p.stat().st_mtime_ns for p in first.path.iterdir()}

    def no_training(*args, **kwargs):
        raise AssertionError("the cached adaptation was trained again")

    monkeypatch.setattr("cloce.mlm_adapt.train_masked_lm", no_training)
    second = adapt_backbone(tiny_model_dir, SENTENCES, QUICK, tmp_path)
    assert second.reused and second.path == first.path and second.info == first.info
    assert {p.name: p.stat().st_mtime_ns for p in second.path.iterdir()} == written


def test_the_directory_name_changes_with_every_input(tiny_model_dir, tiny_encoder_dir, tmp_path):
    digest = sentences_digest(SENTENCES)
    base = adapted_dir(tiny_model_dir, digest, QUICK, tmp_path)
    others = [
        adapted_dir(tiny_model_dir, digest, MlmAdaptConfig(steps=5, batch_size=4, max_length=32), tmp_path),
        adapted_dir(tiny_model_dir, digest, MlmAdaptConfig(steps=4, batch_size=4, max_length=32, lr=1e-4), tmp_path),
        adapted_dir(tiny_model_dir, digest, MlmAdaptConfig(steps=4, batch_size=4, max_length=32, seed=2), tmp_path),
        adapted_dir(tiny_model_dir, sentences_digest(SENTENCES[:-1]), QUICK, tmp_path),
        adapted_dir(tiny_encoder_dir, digest, QUICK, tmp_path),
    ]
    assert len({base, *others}) == 6
    assert adapted_dir(tiny_model_dir, sentences_digest(list(SENTENCES)), QUICK, tmp_path) == base


def test_the_same_seed_gives_the_same_weights(tiny_encoder_dir, tmp_path):
    """Even the fresh MLM head of a checkpoint that had none is drawn from the seed."""
    first = adapt_backbone(tiny_encoder_dir, SENTENCES, QUICK, tmp_path / "a")
    again = adapt_backbone(tiny_encoder_dir, SENTENCES, QUICK, tmp_path / "b")
    reseeded = adapt_backbone(tiny_encoder_dir, SENTENCES, MlmAdaptConfig(steps=4, batch_size=4, max_length=32,
                                                                          seed=2), tmp_path / "a")
    a, b, c = weights(first.path), weights(again.path), weights(reseeded.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_adaptation_leaves_the_callers_random_state_alone(tiny_model_dir, tmp_path):
    torch.manual_seed(7)
    adapt_backbone(tiny_model_dir, SENTENCES, QUICK, tmp_path)
    after = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), after)


def test_a_failed_run_leaves_no_directory_behind(tiny_model_dir, tmp_path, monkeypatch):
    def half_written(backbone, sentences, config, out_dir, device):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr("cloce.mlm_adapt.train_masked_lm", half_written)
    with pytest.raises(KeyboardInterrupt):
        adapt_backbone(tiny_model_dir, SENTENCES, QUICK, tmp_path)
    assert [p.suffix for p in (tmp_path / "mlm_adapt").iterdir()] == [".lock"]


def test_prompt_variants_load_the_trained_head_of_an_adapted_encoder(tiny_encoder_dir, tmp_path):
    """An encoder without an MLM head gets one from the adaptation, and the prompt model uses it."""
    from cloce.pipeline import build_pipeline
    from cloce.variants import get_variant

    assert not load_masked_lm(tiny_encoder_dir).head_pretrained
    adapted = adapt_backbone(tiny_encoder_dir, SENTENCES, QUICK, tmp_path)
    assert adapted.info["head_was_pretrained"] is False
    labels = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)"])
    pipeline = build_pipeline(get_variant("prompt_ki"), labels, ("entity",), str(adapted.path), 64)
    assert pipeline.head_pretrained
    saved = weights(adapted.path)["cls.predictions.transform.dense.weight"]
    assert torch.equal(pipeline.model.mlm.cls.predictions.transform.dense.weight.detach(), saved)


def tiny_dataset() -> Dataset:
    instances = tuple(make_instance(f"s{i}", *row) for i, row in enumerate(ROWS))
    labels = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Component-Whole(e1,e2)"])
    return Dataset(instances, instances[::2], instances[1::2], labels, has_types=False, files={})


def test_train_adapts_the_backbone_of_prompt_variants_only(tiny_model_dir, tmp_path):
    values = dict(model=tiny_model_dir, k=2, epochs=1, batch_size=4, lr=1e-3, max_seq_len=32,
                  mlm_adapt_steps=3, mlm_adapt_batch_size=4, cache_dir=str(tmp_path), num_threads=1)
    prompted = train(TrainConfig(variant="prompt_ki", **values), tiny_dataset())
    assert prompted.mlm_adapt is not None and prompted.pipeline.model_name == str(prompted.mlm_adapt.path)
    assert prompted.mlm_adapt.info["sentences"] == len(ROWS)  # every train sentence, not the K-shot sample
    finetuned = train(TrainConfig(variant="finetune", **values), tiny_dataset())
    assert finetuned.mlm_adapt is None and finetuned.pipeline.model_name == tiny_model_dir


def test_adaptation_settings_are_validated():
    with pytest.raises(ConfigError, match="mlm_adapt_steps"):
        TrainConfig(mlm_adapt_steps=-1)
    with pytest.raises(ConfigError, match="mlm_adapt_lr"):
        TrainConfig(mlm_adapt_lr=0.0)
    with pytest.raises(ConfigError, match="mask_probability"):
        MlmAdaptConfig(mask_probability=1.5)


def test_cli_adapt_prints_the_cached_directory(tiny_model_dir, tmp_path, capsys):
    from cloce.cli import main

    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"token": list(s), "h": {"pos": [0, 1]}, "t": {"pos": [1, 2]},
                                          "relation": "Other"}) for s in SENTENCES) + "\n")
    args = ["adapt", "--train", str(data), "--model", tiny_model_dir, "--steps", "2", "--batch-size", "4",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent == tmp_path / "cache" / "mlm_adapt"
    assert json.loads((path / INFO_FILE).read_text())["sentences"] == len(SENTENCES)
