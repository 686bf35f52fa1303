"""Typed configuration of one training run, validated once, with errors that name the field."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from cloce.data.sampling import KSHOT_SAMPLERS
from cloce.variants import VARIANTS


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = None  # None: $CLOCE_DATA_DIR, else ../shared/datasets/semeval beside a checkout
    train: str | None = None  # explicit split files win over data_dir
    val: str | None = None
    test: str | None = None
    format: Literal["auto", "tacred", "opennre"] = "auto"
    # Ready-made K-shot sets, `<dir>/<K>-<seed>/train.txt` (KnowPrompt's and DeepKE's layout,
    # with their own val/test where present); None: TrainConfig.kshot_sampler draws them.
    kshot_dir: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    variant: str = "prompt_ki"
    model: str | None = None  # Hugging Face id or local path; None: the bundled all-MiniLM-L6-v2
    k: int | None = 16  # instances per relation; None trains on the full training set
    seed: int = 1  # picks the K-shot sample and seeds training
    # How the K-shot set is drawn (cloce/data/sampling.py): "knowprompt", KnowPrompt's own sets
    # (seed s after the shuffles of seeds 1..s-1, as its generate_k_shot.py makes them), or
    # "per_label", each label drawn on its own from (K, seed, label): the project's sets before.
    kshot_sampler: Literal["knowprompt", "per_label"] = "knowprompt"
    kshot_val: bool = False  # validate on a K-shot sample of val instead of all of it
    test_sample: int | None = None  # test on a fixed random subset of this size (same for every run); None: all
    val_sample: int | None = None  # validate on a fixed random subset of val of this size; None: all
    epochs: int = 20
    batch_size: int = 16  # the global batch: N workers each take a share of it (cloce/batching.py)
    # Batches of instances of similar length (a new random set every epoch): on SemEval K=16,
    # batch 8, 93% of the padded tokens are real instead of 70%, and the CE pass on CPU is
    # ~15% faster. Off by default: in few-shot runs it learned worse (prompt_ki K=16, batch 8:
    # lower test F1 in 4 of 4 paired runs, seeds 1-3 x 2 epochs and seed 1 x 5 epochs).
    length_grouped: bool = False
    eval_batch_size: int = 64
    lr: float = 1e-4  # classification (cross-entropy) step
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    max_seq_len: int = 256
    # Contrastive step (cloce_s / cloce_d only).
    cl_lr: float = 1e-5
    cl_batch_size: int = 16  # pairs per optimiser step, all workers together
    margin: float = 0.5
    trainable_margin: bool = False  # bounded to [margin_low, margin_high]
    margin_low: float = 0.05
    margin_high: float = 1.0
    cl_vector: Literal["mask", "mean"] = "mask"  # CLoCE-D sentence vector: [MASK] state or mean pool
    # Masked-LM adaptation before prompt-tuning, 0 steps = off. The bundled MiniLM has no MLM
    # head, so the prompt variants would score [MASK] through a fresh one; these steps train it
    # (and the encoder) on the unlabelled train sentences first. Prompt variants only, all
    # alike: finetune reads no MLM head. Its seed is fixed, not `seed`: every trial and seed
    # shares one cached adaptation (see cloce/mlm_adapt.py).
    # How the MLM head transform starts when the checkpoint has none (the bundled MiniLM):
    # "identity" passes the [MASK] state through unrotated (cloce/backbone.py: identity_transform).
    fresh_head_init: Literal["identity", "random"] = "identity"
    # Prompt variants: `@ head @ ... # tail #` in the sentence as well, as the fine-tuning input
    # has them. None: on exactly when the labels are directed (SemEval's `Type(e1,e2)`), where
    # they gave prompt_ki +5.1 points over 5 seeds (README); False is the paper's template.
    sentence_markers: bool | None = None
    # SemEval's prompt variants often get the relation right and its direction wrong. Both
    # options below are opt-in (prompt variants only; finetune reads neither, as it reads no
    # soft label or template). "role": a directed label X-Y(e1,e2) starts from the head's role
    # word X, X-Y(e2,e1) from Y, instead of the name both directions share, so the two do not
    # start equal (cloce/vocab.py: role_label_name).
    label_init: Literal["name", "role"] = "name"
    # "role_of": `[T_h] head is the [MASK] of [T_t] tail`, asking for the head's role, which
    # label_init="role" names (cloce/prompt.py).
    template: Literal["relation_of", "role_of"] = "relation_of"
    # PTR (variant ptr): a rules file in PTR's temp.txt format (each relation's head word,
    # relation words and tail word); None: derived from the labels and the K-shot set (cloce/ptr.py).
    ptr_rules_file: str | None = None
    # KnowPrompt (variant knowprompt): the weight λ of its KE loss (its scripts: 0.001), and the
    # learning rate of the word-embedding matrix that holds its virtual type and answer words
    # (and is the tied decoder); None: lr, as KnowPrompt's released scripts train it.
    ke_weight: float = 0.001
    virtual_lr: float | None = None
    mlm_adapt_steps: int = 0
    mlm_adapt_lr: float = 5e-5
    mlm_adapt_batch_size: int = 32
    # Adapt the MLM head only, the encoder frozen: the prompt-tuning then starts from the
    # pre-trained encoder with a head fitted to it. Cached apart from the full adaptation.
    mlm_adapt_head_only: bool = False
    cache_dir: str | None = None  # adapted backbones; None: $CLOCE_CACHE_DIR, else ~/.cache/cloce
    # Runtime.
    device: str = "auto"  # auto: cuda when present, else cpu
    bf16: bool = False  # bf16 autocast where the device computes bf16 natively (else fp32): runtime.bf16_native
    num_threads: int | None = None  # CPU threads; None: all cores
    # torch.compile of the encoder (dynamic shapes: batches are padded to their own length).
    # Off by default: on this 2-core CPU a K=16 trial is slower compiled, the compile time
    # counted (benchmarks/results/RESULTS.md, rows 1 and 3).
    compile: bool = False

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError("; ".join(problems))

    def _problems(self):
        if self.variant not in VARIANTS:
            yield f"variant: {self.variant!r} is not one of {', '.join(VARIANTS)}"
        if self.kshot_sampler not in KSHOT_SAMPLERS:
            yield f"kshot_sampler: must be one of {', '.join(KSHOT_SAMPLERS)}, got {self.kshot_sampler!r}"
        if self.k is not None and self.k < 1:
            yield f"k: must be >= 1 (or None for full data), got {self.k}"
        for name in ("epochs", "batch_size", "eval_batch_size", "cl_batch_size", "max_seq_len"):
            if getattr(self, name) < 1:
                yield f"{name}: must be >= 1, got {getattr(self, name)}"
        if self.mlm_adapt_steps < 0:
            yield f"mlm_adapt_steps: must be >= 0 (0 = no adaptation), got {self.mlm_adapt_steps}"
        if self.mlm_adapt_batch_size < 1:
            yield f"mlm_adapt_batch_size: must be >= 1, got {self.mlm_adapt_batch_size}"
        for name in ("lr", "cl_lr", "mlm_adapt_lr"):
            if not getattr(self, name) > 0:
                yield f"{name}: must be > 0, got {getattr(self, name)}"
        if self.ke_weight < 0:
            yield f"ke_weight: must be >= 0 (0 = no KE loss), got {self.ke_weight}"
        if self.virtual_lr is not None and not self.virtual_lr > 0:
            yield f"virtual_lr: must be > 0 (or None for lr), got {self.virtual_lr}"
        if self.margin < 0:
            yield f"margin: must be >= 0, got {self.margin}"
        if self.trainable_margin and not self.margin_low < self.margin < self.margin_high:
            yield f"margin: a trainable margin must start inside ({self.margin_low}, {self.margin_high}), got {self.margin}"
        if not 0 <= self.warmup_ratio < 1:
            yield f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}"
        if self.fresh_head_init not in ("identity", "random"):
            yield f"fresh_head_init: must be 'identity' or 'random', got {self.fresh_head_init!r}"
        if self.label_init not in ("name", "role"):
            yield f"label_init: must be 'name' or 'role', got {self.label_init!r}"
        if self.template not in ("relation_of", "role_of"):
            yield f"template: must be 'relation_of' or 'role_of', got {self.template!r}"
        if self.mlm_adapt_head_only and not self.mlm_adapt_steps:
            yield "mlm_adapt_head_only: adapts nothing without mlm_adapt_steps > 0; set both or neither"
        if self.cl_vector not in ("mask", "mean"):
            yield f"cl_vector: must be 'mask' or 'mean', got {self.cl_vector!r}"
        if self.test_sample is not None and self.test_sample < 1:
            yield f"test_sample: must be >= 1 (or None for the whole test set), got {self.test_sample}"
        if self.val_sample is not None and self.val_sample < 1:
            yield f"val_sample: must be >= 1 (or None for the whole val set), got {self.val_sample}"
        if self.val_sample is not None and self.kshot_val:
            yield "val_sample: a fixed val subset and kshot_val exclude each other; set one"
        if self.num_threads is not None and self.num_threads < 1:
            yield f"num_threads: must be >= 1, got {self.num_threads}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig keys {unknown}; allowed: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class MlmAdaptConfig:
    """The masked-LM adaptation of cloce/mlm_adapt.py (TrainConfig.mlm_adapt_* set steps, lr,
    batch_size and head_only)."""

    steps: int = 300  # optimiser steps; the sentences are reshuffled after each pass over them
    lr: float = 5e-5
    batch_size: int = 32
    mask_probability: float = 0.15
    max_length: int = 256  # word pieces per sentence, [CLS]/[SEP] included
    seed: int = 1  # head initialisation, sentence order and masking
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    grad_clip: float = 1.0
    head_only: bool = False  # train the MLM head only; the encoder stays as it was

    def __post_init__(self) -> None:
        problems = [f"{name}: must be >= 1, got {getattr(self, name)}"
                    for name in ("steps", "batch_size", "max_length") if getattr(self, name) < 1]
        if not self.lr > 0:
            problems.append(f"lr: must be > 0, got {self.lr}")
        if not 0 < self.mask_probability < 1:
            problems.append(f"mask_probability: must be in (0, 1), got {self.mask_probability}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if problems:
            raise ConfigError("; ".join(problems))
