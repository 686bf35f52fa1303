"""The training loop on a tiny random BERT and a slice of hand-made data."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from cloce.config import ConfigError, TrainConfig
from cloce.contrastive import PairSet
from cloce.data.dataset import Dataset
from cloce.data.types import LabelMap
from cloce.optim import contrastive_optimizer
from cloce.train import contrastive_pass, train
from tests.conftest import TINY_ROWS, make_instance

LABELS = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Component-Whole(e1,e2)"])
SENTENCES = TINY_ROWS


def tiny_dataset() -> Dataset:
    instances = tuple(make_instance(f"s{i}", *row) for i, row in enumerate(SENTENCES))
    return Dataset(instances, instances[::2], instances[1::2], LABELS, has_types=False, files={})


def tiny_config(**overrides) -> TrainConfig:
    # One torch thread: the tiny model gains nothing from more, and the CPU is shared.
    values = dict(variant="cloce_d", k=2, seed=1, epochs=2, batch_size=4, lr=1e-3, cl_lr=1e-3, max_seq_len=64,
                  num_threads=1)
    return TrainConfig(**(values | overrides))


def test_history_has_one_record_per_epoch_with_pair_counts(tiny_bert_config):
    result = train(tiny_config(), tiny_dataset(), backbone_config=tiny_bert_config)
    assert [r.epoch for r in result.history] == [1, 2]
    first = result.history[0]
    assert first.pairs["train_correct"] + first.pairs["train_error"] == 6  # K=2 x 3 labels
    assert first.pairs["pairs_built"] + first.pairs["pairs_skipped_positive"] + first.pairs["pairs_skipped_negative"] == 2 * first.pairs["train_error"]
    val_f1 = [r.val_micro_f1 for r in result.history]
    assert result.best_epoch == val_f1.index(max(val_f1)) + 1  # the first epoch with the best val F1
    assert result.best_val.micro_f1 == max(val_f1)
    assert [r.val_accuracy for r in result.history] != [None, None]
    assert all(0.0 <= r.val_accuracy <= 1.0 and r.metrics()["val_accuracy"] == r.val_accuracy for r in result.history)
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
            state.rng.pop("cuda", None)  # nor the CUDA generators, nor val accuracy in the history
            state.history = [{k: v for k, v in r.items() if k != "val_accuracy"} for r in state.history]
            save_train_state(state, tmp_path / "state")

    train(tiny_config(epochs=1), tiny_dataset(), callbacks=[KeepOldStyleSnapshot()], backbone_config=tiny_bert_config)
    resumed = train(tiny_config(), tiny_dataset(), backbone_config=tiny_bert_config, resume=load_train_state(tmp_path / "state"))
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert resumed.history[0].val_accuracy is None and resumed.history[1].val_accuracy is not None


def snapshot_and_reload(tmp_path):
    """A TrainState taken (not trained: a stand-in model) and read back from disk."""
    import random

    from cloce.metrics import evaluate
    from cloce.state import load_train_state, save_train_state
    from cloce.resume import take_state

    best = (1.0, 1, {}, evaluate([0], [0], LABELS))
    state = take_state([], best, torch.nn.Linear(1, 1), {}, random.Random(0))
    return load_train_state(save_train_state(state, tmp_path / "state"))


def test_a_resume_checkpoint_carries_the_cuda_generators(tmp_path, monkeypatch):
    """Dropout on a GPU draws from the CUDA generators: without them a resumed GPU run drifts."""
    import random

    from cloce.resume import restore_state

    saved = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5, 6], dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    restored = {}
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.update({device: state}))
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)

    state = snapshot_and_reload(tmp_path)
    restore_state(state, torch.nn.Linear(1, 1), {}, random.Random(0))
    assert sorted(restored) == [0, 1] and all(torch.equal(restored[d], saved[d]) for d in (0, 1))

    restored.clear()
    del state.rng["cuda"]  # a checkpoint of a CPU run, or from before the CUDA generators were saved
    restore_state(state, torch.nn.Linear(1, 1), {}, random.Random(0))
    assert restored == {}


@pytest.mark.ci_may_skip  # CI machines have no GPU; the test above checks the same wiring there
@pytest.mark.ci_may_skip  # CI has no GPU; run on a lent GPU machine
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resuming_on_a_gpu_continues_its_random_stream(tmp_path):
    import random

    from cloce.resume import restore_state

    torch.cuda.manual_seed_all(3)
    torch.rand(4, device="cuda")
    state = snapshot_and_reload(tmp_path)
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(99)
    restore_state(state, torch.nn.Linear(1, 1), {}, random.Random(0))
    assert torch.equal(torch.rand(4, device="cuda"), expected)


def batches_seen_by_the_loop(monkeypatch) -> list[list[tuple[list[int], list[int]]]]:
    """Per epoch, the (instance indices, lengths) of every batch the cross-entropy pass gets."""
    import cloce.train

    seen = []
    original = cloce.train.classification_pass

    def spy(model, loader, *args):
        seen.append([(b["index"].tolist(), b["attention_mask"].sum(-1).tolist()) for b in loader])
        return original(model, loader, *args)

    monkeypatch.setattr(cloce.train, "classification_pass", spy)
    return seen


def test_length_grouped_batches_reach_the_training_loop(tiny_bert_config, monkeypatch):
    from cloce.batching import GlobalBatchSampler

    seen = batches_seen_by_the_loop(monkeypatch)
    config = tiny_config(k=3, epochs=3, batch_size=2, length_grouped=True)
    grouped = train(config, tiny_dataset(), backbone_config=tiny_bert_config)
    grouped_batches, seen[:] = list(seen), []
    length_of = {i: n for epoch in grouped_batches for batch in epoch for i, n in zip(*batch)}
    sampler = GlobalBatchSampler([length_of[i] for i in range(len(length_of))], 2, seed=1, length_grouped=True)
    for epoch, batches in enumerate(grouped_batches, start=1):
        sampler.set_epoch(epoch)
        assert [indices for indices, _ in batches] == sampler.global_batches()

    plain = train(dataclasses.replace(config, length_grouped=False), tiny_dataset(), backbone_config=tiny_bert_config)
    assert [[i for i, _ in epoch] for epoch in seen] != [[i for i, _ in epoch] for epoch in grouped_batches]
    again = train(config, tiny_dataset(), backbone_config=tiny_bert_config)
    assert [r.train_loss for r in again.history] == [r.train_loss for r in grouped.history] != [
        r.train_loss for r in plain.history]


def test_contrastive_pairs_are_shuffled_with_the_runs_generator(tiny_bert_config, monkeypatch):
    """A K-shot sample is sorted by label, so the pairs are built label by label; the step
    must see them mixed, in an order the seed fixes."""
    import cloce.train

    built, stepped = [], []
    build, step = cloce.train.build_contrastive_pairs, cloce.train.contrastive_pass

    def spy_build(*args):
        pairs = build(*args)
        built.append(list(pairs.pairs))
        return pairs

    def spy_step(model, pipeline, pairs, *args):
        stepped.append(list(pairs.pairs))
        return step(model, pipeline, pairs, *args)

    monkeypatch.setattr(cloce.train, "build_contrastive_pairs", spy_build)
    monkeypatch.setattr(cloce.train, "contrastive_pass", spy_step)
    train(tiny_config(k=3, epochs=3), tiny_dataset(), backbone_config=tiny_bert_config)
    first_run, stepped[:] = list(stepped), []
    assert len(first_run) == 3 and all(len(pairs) >= 4 for pairs in first_run)
    for before, after in zip(built, first_run):
        assert sorted(map(id, before)) == sorted(map(id, after))  # the same pairs ...
    assert any(before != after for before, after in zip(built, first_run))  # ... in another order
    assert any(sorted_by_gold_label(before) and not sorted_by_gold_label(after)
               for before, after in zip(built, first_run))

    train(tiny_config(k=3, epochs=3), tiny_dataset(), backbone_config=tiny_bert_config)
    key = [[(p.anchor.id, p.partner.id, p.y) for p in pairs] for pairs in first_run]
    assert [[(p.anchor.id, p.partner.id, p.y) for p in pairs] for pairs in stepped] == key


def sorted_by_gold_label(pairs) -> bool:
    labels = [p.anchor.label for p in pairs]
    return labels == sorted(labels)


def record_margins(monkeypatch) -> list:
    """The trainable margins `train()` makes, each recording its gradients."""
    import cloce.train
    from cloce.losses import BoundedMargin

    margins = []

    class RecordingMargin(BoundedMargin):
        """Records, at every backward, the step's own gradient and the one the optimiser sees."""

        def __init__(self, *args):
            super().__init__(*args)
            self.fresh, self.seen = [], []
            self.logit.register_hook(lambda grad: self.fresh.append(grad.clone()))
            self.logit.register_post_accumulate_grad_hook(lambda p: self.seen.append(p.grad.clone()))
            margins.append(self)

    monkeypatch.setattr(cloce.train, "BoundedMargin", RecordingMargin)
    return margins


def test_a_trainable_margin_moves_stays_in_bounds_and_its_gradient_is_each_steps_own(tiny_bert_config, monkeypatch):
    margins = record_margins(monkeypatch)
    # A large step: the loss only ever shrinks m, so it is driven against its lower bound.
    config = tiny_config(k=3, epochs=3, cl_batch_size=2, cl_lr=0.5, trainable_margin=True,
                         margin=0.5, margin_low=0.4, margin_high=0.6)
    result = train(config, tiny_dataset(), backbone_config=tiny_bert_config)
    (margin,) = margins
    assert len(margin.fresh) >= 4 and any(g.abs().item() > 0 for g in margin.fresh[1:])
    for fresh, seen in zip(margin.fresh, margin.seen, strict=True):
        assert torch.equal(seen, fresh)  # nothing left over from the step before
    values = [r.margin for r in result.history]
    assert config.margin > values[0] > values[1] > values[2]  # it moves every epoch ...
    assert config.margin_low < values[2] < config.margin_low + 0.01  # ... up to its bound, not past it
    assert values[-1] == pytest.approx(margin().item())


@pytest.mark.ci_may_skip  # CI machines have no GPU
@pytest.mark.ci_may_skip  # CI has no GPU; run on a lent GPU machine
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_trainable_margin_lives_on_the_training_device(tiny_bert_config, monkeypatch):
    margins = record_margins(monkeypatch)
    result = train(tiny_config(device="cuda", trainable_margin=True, cl_lr=5e-2), tiny_dataset(),
                   backbone_config=tiny_bert_config)
    assert margins[0].logit.device.type == "cuda" and result.history[-1].margin != 0.5


def test_cl_vector_mean_pools_the_encoder_states_in_the_contrastive_step(tiny_bert_config, monkeypatch):
    from cloce.model import PromptRelationModel

    asked = []
    forward = PromptRelationModel.forward

    def spy(self, batch, output="logits"):
        asked.append(output)
        return forward(self, batch, output)

    monkeypatch.setattr(PromptRelationModel, "forward", spy)
    mean = train(tiny_config(cl_vector="mean"), tiny_dataset(), backbone_config=tiny_bert_config)
    assert "mask_mean" in asked and "mask_vector" not in asked
    asked.clear()
    mask = train(tiny_config(cl_vector="mask"), tiny_dataset(), backbone_config=tiny_bert_config)
    assert "mask_vector" in asked and "mask_mean" not in asked
    assert mean.history[0].pairs["pairs_built"] > 0
    assert [r.cl_loss for r in mean.history] != [r.cl_loss for r in mask.history]


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
    import cloce.runtime
    import cloce.train

    monkeypatch.setattr(cloce.runtime, "bf16_native", lambda device_type: native)
    with cloce.train.autocast(torch.device("cpu"), True):
        assert torch.is_autocast_enabled("cpu") == native
    with cloce.train.autocast(torch.device("cpu"), False):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.ci_may_skip  # skips only where a GPU is present
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only torch gives")
def test_a_plain_run_honours_the_configured_device(tiny_bert_config):
    # A run without a launcher's runtime must go where config.device says: asking for a GPU
    # that is not there fails at once instead of training on the CPU unnoticed.
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        train(tiny_config(device="cuda"), tiny_dataset(), backbone_config=tiny_bert_config)


def test_the_result_carries_each_test_sentences_gold_and_prediction(tiny_bert_config):
    from cloce.run import per_sentence_test_labels, run_summary

    dataset = tiny_dataset()
    result = train(tiny_config(variant="prompt_ki", epochs=1), dataset, backbone_config=tiny_bert_config)
    gold = [LABELS.id_of(instance.relation) for instance in dataset.test]
    assert per_sentence_test_labels(result) == {"gold": gold, "pred": result.test_predictions, "no_relation_id": 0}
    summary = run_summary(result)  # directed labels: the test's direction report is in the summary
    assert summary["test_wrong_direction_rate"] == result.test.direction.wrong_direction_rate
    assert 0.0 <= summary["test_undirected_accuracy"] <= 1.0


def test_length_sorted_chunks_encode_each_instance_as_one_padded_batch_does(tiny_bert_config):
    """The contrastive step encodes its sentences in length-sorted chunks (less padding): each
    instance's state, and the gradient of one backward over them, match one padded batch."""
    from cloce.encoding import Collator
    from cloce.pipeline import build_pipeline, type_vocabulary
    from cloce.runtime import to_device
    from cloce.train import encode_by_length
    from cloce.variants import get_variant

    data = tiny_dataset()
    torch.manual_seed(0)
    pipeline = build_pipeline(get_variant("cloce_d"), LABELS, type_vocabulary(data.train), None, 64,
                              backbone_config=tiny_bert_config)
    model = pipeline.model.eval()  # no dropout: the two layouts must agree to float tolerance
    instances = list(pipeline.tokenize(data.train))
    assert len({len(pipeline.template.encode(x).input_ids) for x in instances}) > 1  # padding differs
    collate = Collator(pipeline.tokenizer.pad_token_id)

    def gradient(states):
        model.zero_grad()
        (states * torch.arange(1, states.numel() + 1).view_as(states)).sum().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    chunked = encode_by_length(model, pipeline, instances, "mask_vector", torch.device("cpu"), chunk_size=2)
    one_batch = model(to_device(collate([(0, pipeline.template.encode(x)) for x in instances]), torch.device("cpu")),
                      output="mask_vector")
    torch.testing.assert_close(chunked, one_batch, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gradient(chunked), gradient(one_batch), rtol=1e-4, atol=1e-5)
