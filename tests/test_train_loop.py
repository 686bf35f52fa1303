"""The training loop on a tiny random BERT and a slice of hand-made data."""
from __future__ import annotations

import pytest
import torch

from cloce.config import ConfigError, TrainConfig
from cloce.contrastive import PairSet
from cloce.data.dataset import Dataset
from cloce.data.types import LabelMap
from cloce.train import contrastive_optimizer, contrastive_pass, train
from tests.conftest import TINY_ROWS, make_instance

LABELS = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Component-Whole(e1,e2)"])
SENTENCES = TINY_ROWS


def tiny_dataset() -> Dataset:
    instances = tuple(make_instance(f"s{i}", *row) for i, row in enumerate(SENTENCES))
    return Dataset(instances, instances[::2], instances[1::2], LABELS, has_types=False, files={})


def tiny_config(**overrides) -> TrainConfig:
    values = dict(variant="cloce_d", k=2, seed=1, epochs=2, batch_size=4, lr=1e-3, cl_lr=1e-3, max_seq_len=64)
    return TrainConfig(**(values | overrides))


def test_history_has_one_record_per_epoch_with_pair_counts(tiny_bert_config):
    result = train(tiny_config(), tiny_dataset(), backbone_config=tiny_bert_config)
    assert [r.epoch for r in result.history] == [1, 2]
    first = result.history[0]
    assert first.pairs["train_correct"] + first.pairs["train_error"] == 6  # K=2 x 3 labels
    assert first.pairs["pairs_built"] + first.pairs["pairs_skipped_positive"] + first.pairs["pairs_skipped_negative"] == 2 * first.pairs["train_error"]
    assert result.best_epoch in (1, 2)
    assert result.best_val.micro_f1 == max(r.val_micro_f1 for r in result.history)
    assert len(result.test_predictions) == 4


def test_same_seed_gives_identical_metrics(tiny_bert_config):
    first = train(tiny_config(), tiny_dataset(), backbone_config=tiny_bert_config)
    second = train(tiny_config(), tiny_dataset(), backbone_config=tiny_bert_config)
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]
    assert [r.cl_loss for r in first.history] == [r.cl_loss for r in second.history]
    assert first.test_predictions == second.test_predictions


def test_finetune_and_prompt_variants_skip_the_contrastive_step(tiny_bert_config):
    for variant in ("finetune", "prompt", "prompt_ki"):
        result = train(tiny_config(variant=variant, epochs=1), tiny_dataset(), backbone_config=tiny_bert_config)
        assert result.history[0].cl_loss is None
        assert result.history[0].pairs["pairs_built"] == 0


def _parameters_after_contrastive_step(kind: str, tiny_bert_config):
    """A pipeline after one contrastive pass over pairs built from all-wrong predictions."""
    from cloce.contrastive import build_contrastive_pairs
    from cloce.pipeline import build_pipeline, type_vocabulary
    from cloce.runtime import Runtime
    from cloce.variants import get_variant
    import random

    data = tiny_dataset()
    variant = get_variant("cloce_s" if kind == "embedding" else "cloce_d")
    torch.manual_seed(0)
    pipeline = build_pipeline(variant, LABELS, type_vocabulary(data.train), None, 64, backbone_config=tiny_bert_config)
    tokens = pipeline.tokenize(data.train)
    # All but the first "Other" instance predicted as Cause-Effect: positives and negatives both exist.
    first_other = next(i for i, t in enumerate(tokens) if t.label == 0)
    predictions = [1 if t.label == 0 and i != first_other else t.label for i, t in enumerate(tokens)]
    pairs: PairSet = build_contrastive_pairs(tokens, predictions, random.Random(0))
    assert pairs.n_positive and pairs.n_negative
    model = pipeline.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = contrastive_optimizer(model, kind, lr=1e-2, margin=None)
    contrastive_pass(model, pipeline, pairs, optimizer, None, kind, tiny_config(margin=1.5), Runtime())
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    return changed


def test_cloce_s_step_changes_embeddings_only(tiny_bert_config):
    changed = _parameters_after_contrastive_step("embedding", tiny_bert_config)
    assert any("embeddings.word_embeddings" in n for n in changed)
    assert not any(".encoder." in n for n in changed), sorted(changed)
    assert all("embeddings" in n for n in changed), sorted(changed)


def test_cloce_d_step_changes_embeddings_and_encoder(tiny_bert_config):
    changed = _parameters_after_contrastive_step("encoder", tiny_bert_config)
    assert any("embeddings.word_embeddings" in n for n in changed)
    assert any(".encoder.layer." in n for n in changed)
    assert not any(n.startswith("mlm.cls.") and "decoder" not in n for n in changed), sorted(changed)


def test_resuming_from_a_saved_state_continues_exactly(tiny_bert_config, tmp_path):
    from cloce.state import load_train_state, save_train_state

    class KeepSnapshot:
        def on_epoch_end(self, record, pipeline, is_best, snapshot):
            if record.epoch == 2:
                save_train_state(snapshot(), tmp_path / "state")

    config = tiny_config(epochs=3)
    straight = train(config, tiny_dataset(), callbacks=[KeepSnapshot()], backbone_config=tiny_bert_config)
    resumed = train(config, tiny_dataset(), backbone_config=tiny_bert_config, resume=load_train_state(tmp_path / "state"))
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    last, expected = resumed.history[2], straight.history[2]
    assert (last.train_loss, last.cl_loss, last.pairs, last.val_micro_f1) == (
        expected.train_loss, expected.cl_loss, expected.pairs, expected.val_micro_f1)
    assert resumed.best_epoch == straight.best_epoch
    assert resumed.test_predictions == straight.test_predictions


def test_a_checkpoint_with_the_old_loader_generator_still_resumes(tiny_bert_config, tmp_path):
    """Checkpoints from before the stateless samplers also hold rng["shuffle"]; it is ignored."""
    from cloce.state import load_train_state, save_train_state

    class KeepOldStyleSnapshot:
        def on_epoch_end(self, record, pipeline, is_best, snapshot):
            state = snapshot()
            state.rng["shuffle"] = torch.Generator().manual_seed(1).get_state()
            save_train_state(state, tmp_path / "state")

    train(tiny_config(epochs=1), tiny_dataset(), callbacks=[KeepOldStyleSnapshot()], backbone_config=tiny_bert_config)
    resumed = train(tiny_config(), tiny_dataset(), backbone_config=tiny_bert_config, resume=load_train_state(tmp_path / "state"))
    assert [r.epoch for r in resumed.history] == [1, 2]


def test_plain_shuffled_batches_when_length_grouping_is_off(tiny_bert_config):
    first = train(tiny_config(length_grouped=False), tiny_dataset(), backbone_config=tiny_bert_config)
    second = train(tiny_config(length_grouped=False), tiny_dataset(), backbone_config=tiny_bert_config)
    assert [r.train_loss for r in first.history] == [r.train_loss for r in second.history]


def test_test_sample_tests_a_fixed_subset(tiny_bert_config):
    result = train(tiny_config(variant="prompt", epochs=1, test_sample=3), tiny_dataset(), backbone_config=tiny_bert_config)
    assert len(result.test_predictions) == 3
    assert result.test.n == 3


def test_val_sample_validates_on_a_fixed_subset(tiny_bert_config):
    result = train(tiny_config(variant="prompt", epochs=1, val_sample=2), tiny_dataset(), backbone_config=tiny_bert_config)
    assert result.best_val.n == 2


@pytest.mark.parametrize("values, message", [
    ({"val_sample": 0}, "val_sample: must be >= 1"),
    ({"val_sample": 100, "kshot_val": True}, "exclude each other"),
])
def test_a_bad_val_sample_is_named(values, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**values)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_autocast_only_where_the_device_computes_bf16(monkeypatch, native):
    import cloce.train

    monkeypatch.setattr(cloce.train, "bf16_native", lambda device_type: native)
    with cloce.train.autocast(torch.device("cpu"), True):
        assert torch.is_autocast_enabled("cpu") == native
    with cloce.train.autocast(torch.device("cpu"), False):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only torch gives")
def test_a_plain_run_honours_the_configured_device(tiny_bert_config):
    # A run without a launcher's runtime must go where config.device says: asking for a GPU
    # that is not there fails at once instead of training on the CPU unnoticed.
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        train(tiny_config(device="cuda"), tiny_dataset(), backbone_config=tiny_bert_config)
