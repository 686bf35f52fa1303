"""The training loop: per epoch the cross-entropy pass, then (CLoCE) the contrastive step,
then validation; the best-validation epoch is kept and tested once.

Read `train()` top to bottom; the passes it calls are below it. What it reports is in
cloce/records.py, resume in cloce/resume.py, inference in cloce/inference.py.
"""
from __future__ import annotations

import copy
import math
import random
import time
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cloce import optim
from cloce.batching import STAND_IN, GlobalBatchSampler, global_batch_sizes, share_weight, worker_share
from cloce.config import TrainConfig
from cloce.contrastive import PairSet, build_contrastive_pairs
from cloce.data.dataset import Dataset
from cloce.data.kshot_sets import k_shot_splits
from cloce.data.sampling import draw_k_shot, fixed_subset
from cloce.encoding import Collator, EncodedSplit, TokenizedInstance
from cloce.inference import evaluate_split
from cloce.knowprompt import type_counts
from cloce.ptr import ptr_rules
from cloce.losses import BoundedMargin, contrastive_margin_loss
from cloce.metrics import Evaluation
from cloce.mlm_adapt import AdaptedBackbone, MlmAdaptConfig, adapt_backbone
from cloce.optim import contrastive_optimizer, linear_warmup_decay
from cloce.pipeline import build_pipeline, type_vocabulary
from cloce.records import EpochCallback, EpochRecord, TrainResult
from cloce.resume import restore_state, take_state
from cloce.runtime import (
    Runtime, autocast, bf16_active, compile_encoder, pick_device, seed_everything, set_threads, to_device, unwrap,
)
from cloce.sentence_markers import sentence_markers_for
from cloce.state import TrainState
from cloce.variants import Variant, get_variant


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss: the run stops instead of training on garbage."""


def train(
    config: TrainConfig,
    dataset: Dataset,
    callbacks: Sequence[EpochCallback] = (),
    runtime: Runtime | None = None,
    backbone_config=None,
    resume: TrainState | None = None,
) -> TrainResult:
    """Train `config` on `dataset`; with `resume`, continue after the epoch it was taken at."""
    # Launchers (the study's Ray workers) bring their own device; a plain run honours config.device.
    runtime = runtime or Runtime(device=pick_device(config.device))
    set_threads(config.num_threads)
    seed_everything(config.seed)
    variant = get_variant(config.variant)

    # Data: the K-shot sample of train (val and test unchanged, unless a ready-made K-shot
    # folder brings its own), tokenised once per split.
    kshot = k_shot_splits(dataset, config.k, config.seed, config.kshot_sampler) if config.k else None
    sample = kshot.sample if kshot else None
    train_instances = sample.instances if sample else dataset.train
    val_pool = kshot.val if kshot and kshot.val is not None else dataset.val
    val_instances = fixed_subset(val_pool, config.val_sample, name="cloce-val-subset")
    if config.kshot_val:
        val_instances = draw_k_shot(val_pool, dataset.label_map, config.k, config.seed, config.kshot_sampler,
                                    allow_short=True).instances
    types = type_vocabulary([*dataset.train, *dataset.val, *dataset.test])
    adapted = adapted_backbone(config, dataset, variant, runtime, backbone_config)
    pipeline = build_pipeline(
        variant, dataset.label_map, types, str(adapted.path) if adapted else config.model, config.max_seq_len,
        backbone_config=None if adapted else backbone_config, fresh_head_init=config.fresh_head_init,
        sentence_markers=sentence_markers_for(config, dataset.label_map),
        label_init=config.label_init, template=config.template,
        # The baselines' priors come from the training set alone, as a K-shot user has them.
        ptr_rules=ptr_rules(config.ptr_rules_file, dataset.label_map, train_instances) if variant.head == "ptr" else None,
        type_counts=type_counts(train_instances), ke_weight=config.ke_weight,
    )
    train_tokens = pipeline.tokenize(train_instances)
    train_split = EncodedSplit(pipeline.encode(train_tokens))
    train_loader = runtime.prepare_loader(
        DataLoader(
            train_split, batch_sampler=train_sampler(train_split, config, runtime),
            collate_fn=Collator(pipeline.tokenizer.pad_token_id),
        )
    )
    val_split = EncodedSplit(pipeline.encode(pipeline.tokenize(val_instances)))
    test_instances = fixed_subset(kshot.test if kshot and kshot.test is not None else dataset.test, config.test_sample)
    test_split = EncodedSplit(pipeline.encode(pipeline.tokenize(test_instances))) if test_instances else None

    # Model and optimisers: one for cross-entropy, one of its own for the contrastive step.
    if config.compile:
        compile_encoder(pipeline.model)
    model = runtime.model_to_device(pipeline.model)
    ce_optimizer = optim.model_adamw(unwrap(model), config.lr, config.weight_decay, word_lr=word_lr(config, variant))
    steps = config.epochs * math.ceil(len(train_tokens) / config.batch_size)  # global batches: any worker count
    scheduler = linear_warmup_decay(ce_optimizer, steps, config.warmup_ratio)
    margin = None
    if config.trainable_margin:  # not part of the model: moved here, its gradient zeroed by cl_optimizer
        margin = BoundedMargin(config.margin, config.margin_low, config.margin_high).to(runtime.device)
    cl_optimizer = contrastive_optimizer(unwrap(model), variant.contrastive, config.cl_lr, margin)
    pair_rng = random.Random(f"cloce-pairs:{config.seed}")

    history: list[EpochRecord] = []
    best: tuple[float, int, dict, Evaluation] | None = None
    optimizers = {"ce": ce_optimizer, "scheduler": scheduler, "cl": cl_optimizer, "margin": margin}
    if resume is not None:
        history, best = restore_state(resume, unwrap(model), optimizers, pair_rng)
        if not resume.optimizers and len(history) < config.epochs:
            raise ValueError(f"the resume state was taken after the last of {len(history)} epochs (no optimiser "
                             f"state): it cannot continue to {config.epochs} epochs")

    def snapshot() -> TrainState:
        return take_state(history, best, unwrap(model), optimizers, pair_rng)

    for epoch in range(len(history) + 1, config.epochs + 1):
        started = time.perf_counter()
        start_epoch(train_loader, unwrap(model), epoch)
        train_loss, predictions = classification_pass(model, train_loader, ce_optimizer, scheduler, config, runtime)
        ce_seconds = time.perf_counter() - started

        cl_loss, pairs = None, PairSet()
        if variant.contrastive != "none":
            pairs = build_contrastive_pairs(train_tokens, predictions, pair_rng)
            # The K-shot sample is sorted by label: unshuffled, each contrastive batch would hold
            # the errors of one or two gold labels. Same generator, same list on every worker.
            pair_rng.shuffle(pairs.pairs)
            cl_loss = contrastive_pass(model, pipeline, pairs, cl_optimizer, margin, variant.contrastive, config, runtime)
        cl_seconds = time.perf_counter() - started - ce_seconds

        val_eval, _ = evaluate_split(model, pipeline, val_split, config, runtime)
        record = EpochRecord(
            epoch=epoch, train_loss=train_loss, val_micro_f1=val_eval.micro_f1,
            val_macro_f1_semeval=val_eval.macro_f1_semeval, val_accuracy=val_eval.accuracy,
            cl_loss=cl_loss, pairs=pairs.stats(),
            margin=None if variant.contrastive == "none" else (margin().item() if margin else config.margin),
            seconds=time.perf_counter() - started, ce_seconds=ce_seconds, cl_seconds=cl_seconds,
            val_seconds=time.perf_counter() - started - ce_seconds - cl_seconds,
            train_samples_per_s=len(train_tokens) / ce_seconds,
        )
        history.append(record)
        is_best = best is None or val_eval.micro_f1 > best[0]
        if is_best:
            best = (val_eval.micro_f1, epoch, copy.deepcopy(unwrap(model).state_dict()), val_eval)
        for callback in callbacks:
            callback.on_epoch_end(record, pipeline, is_best, snapshot)

    # Test once, with the weights of the best validation epoch.
    _, best_epoch, best_state, best_val = best
    unwrap(model).load_state_dict(best_state)
    test_eval, test_predictions = (None, [])
    if test_split is not None:
        test_eval, test_predictions = evaluate_split(model, pipeline, test_split, config, runtime)
    return TrainResult(config, pipeline, sample, history, best_epoch, best_val, test_eval, test_predictions, adapted,
                       bf16_active=bf16_active(runtime.device, config.bf16),
                       test_gold=[item.label for item in test_split.items] if test_split is not None else [])


def word_lr(config: TrainConfig, variant: Variant) -> float | None:
    """KnowPrompt trains its virtual words' rows at a learning rate of their own (virtual_lr)."""
    return config.virtual_lr if variant.head == "knowprompt" else None


def adapted_backbone(
    config: TrainConfig, dataset: Dataset, variant: Variant, runtime: Runtime, backbone_config=None
) -> AdaptedBackbone | None:
    """With `mlm_adapt_steps`, a prompt variant's backbone is `config.model` adapted on every
    train sentence (unlabelled, not just the K-shot sample); cached, so it is trained once."""
    if not config.mlm_adapt_steps or variant.head != "prompt":
        return None
    if backbone_config is not None:
        raise ValueError("mlm_adapt_steps adapts pre-trained weights; it cannot start from a backbone_config")
    settings = MlmAdaptConfig(steps=config.mlm_adapt_steps, lr=config.mlm_adapt_lr,
                              head_only=config.mlm_adapt_head_only,
                              batch_size=config.mlm_adapt_batch_size, max_length=config.max_seq_len)
    return adapt_backbone(config.model, [i.tokens for i in dataset.train], settings, config.cache_dir, runtime.device)


def classification_pass(model, loader, optimizer, scheduler, config: TrainConfig, runtime: Runtime):
    """One cross-entropy epoch; returns its mean loss and every training instance's prediction
    (taken from this pass itself, as the contrastive step needs them: no second pass)."""
    model.train()
    total, count, predicted = 0.0, 0, {}
    # With several workers the loader gives this worker's share of each global batch
    # (cloce.batching); each share's mean is weighted so that the step is the global batch's
    # mean. One worker: each batch is its own global batch (any iterable of batches will do).
    batches = (zip(loader, global_batch_sizes(len(loader.dataset), config.batch_size), strict=True)
               if runtime.world_size > 1 else ((batch, None) for batch in loader))
    for batch, global_size in batches:
        batch = to_device(batch, runtime.device)
        real = batch["index"] != STAND_IN  # all rows, or the one stand-in row of an empty share
        with autocast(runtime.device, config.bf16):
            logits, aux_loss = model(batch, output="with_aux_loss")
        mean = F.cross_entropy(logits.float(), batch["labels"])
        if aux_loss is not None:  # the variant's own extra objective: PTR's per-mask words, KnowPrompt's KE term
            mean = mean + aux_loss.float()
        check_finite(mean, "cross-entropy")
        share = int(real.sum())
        loss = mean * share_weight(share, global_size or share, runtime.world_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        total += mean.item() * share
        count += share
        predicted.update(zip(batch["index"][real].tolist(), logits.argmax(-1)[real].tolist()))
    parts = runtime.gather((predicted, total, count))
    merged = {index: label for part in parts for index, label in part[0].items()}
    mean_loss = sum(part[1] for part in parts) / max(1, sum(part[2] for part in parts))
    return mean_loss, [merged[i] for i in range(len(merged))]


def contrastive_pass(model, pipeline, pairs: PairSet, optimizer, margin, kind: str, config: TrainConfig, runtime: Runtime):
    """One pass over the epoch's pairs with the margin loss; returns the mean loss (None: no pairs)."""
    if not pairs.pairs or optimizer is None:
        return None
    output = "embedding_mean" if kind == "embedding" else ("mask_vector" if config.cl_vector == "mask" else "mask_mean")
    model.train()
    total, count = 0.0, 0
    # Workers split each global mini-batch of `cl_batch_size` pairs of the (identical) pair
    # list, weighted as the CE pass's shares: the step is the mean over all its pairs. Every
    # worker takes the same number of steps, or DistributedDataParallel would wait forever.
    for start in range(0, len(pairs.pairs), config.cl_batch_size):
        global_batch = pairs.pairs[start : start + config.cl_batch_size]
        chunk = worker_share(global_batch, runtime.world_size, runtime.rank)
        weight = share_weight(len(chunk), len(global_batch), runtime.world_size)
        chunk = chunk or global_batch[:1]  # a worker left without pairs still steps, weighted 0
        # An error instance anchors both its positive and its negative pair: encode it once.
        anchor_of = {id(p.anchor): p.anchor for p in chunk}
        row_of = {key: row for row, key in enumerate(anchor_of)}
        y = torch.tensor([p.y for p in chunk], device=runtime.device)
        rows = torch.tensor([row_of[id(p.anchor)] for p in chunk], device=runtime.device)
        with autocast(runtime.device, config.bf16):
            states = encode_by_length(model, pipeline, [*anchor_of.values(), *(p.partner for p in chunk)], output,
                                      runtime.device, config.batch_size)
        s_i, s_j = states[: len(anchor_of)][rows], states[len(anchor_of) :]
        mean = contrastive_margin_loss(s_i.float(), s_j.float(), y, margin() if margin else config.margin)
        check_finite(mean, "contrastive")
        loss = weight * mean
        model.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)  # also the trainable margin's, which is not in the model
        loss.backward()
        if margin is not None:  # outside the model, so DistributedDataParallel does not average it
            runtime.average_gradients(margin.parameters())
        optimizer.step()
        model.zero_grad(set_to_none=True)  # the CE optimiser must not see contrastive gradients
        if weight:  # a stand-in pair counts for nothing
            total += mean.item() * len(chunk)
            count += len(chunk)
    totals = runtime.gather((total, count))
    return sum(t for t, _ in totals) / max(1, sum(c for _, c in totals))


def encode_by_length(model, pipeline, instances: list[TokenizedInstance], output: str, device,
                     chunk_size: int) -> torch.Tensor:
    """The model's `output` for each instance, in their order, encoded in length-sorted chunks:
    one batch of all a step's anchors and partners would pad ~30 sentences to the longest
    (benchmarks/results/RESULTS.md, 2). The chunks share one autograd graph, so a single backward
    gives the same gradient."""
    encoded = pipeline.encode(instances)
    collate = Collator(pipeline.tokenizer.pad_token_id)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    parts = [model(to_device(collate([(0, encoded[i]) for i in order[start : start + chunk_size]]), device), output=output)
             for start in range(0, len(order), chunk_size)]
    return torch.cat(parts)[torch.tensor(order, device=device).argsort()]  # back to the given order


def train_sampler(split: EncodedSplit, config: TrainConfig, runtime: Runtime) -> GlobalBatchSampler:
    """This worker's share of the global batches, a function of (seed, epoch) only: nothing to
    checkpoint, and a resumed run continues in the order of an uninterrupted one. A batch
    sampler: a distributed launcher must not put a DistributedSampler in its place (Ray:
    `prepare_data_loader(..., add_dist_sampler=False)`)."""
    lengths = [len(e.input_ids) for e in split.items]
    return GlobalBatchSampler(lengths, config.batch_size, runtime.world_size, runtime.rank, config.seed,
                              length_grouped=config.length_grouped)


def start_epoch(loader, model, epoch: int) -> None:
    """The sampler draws a new order only when told the epoch; so does a model that draws per
    epoch (KnowPrompt's negative spans)."""
    sampler = getattr(loader, "batch_sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if hasattr(model, "epoch"):
        model.epoch = epoch


def check_finite(loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"{what} loss became {loss.item()}; lower the learning rate or check the data")
