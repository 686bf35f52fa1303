"""A short masked-LM adaptation of the backbone on a data set's unlabelled training sentences.

The prompt variants score [MASK] through the checkpoint's MLM head. A sentence encoder
(the bundled all-MiniLM-L6-v2) ships without one, so that head would start fresh and learn
from a few dozen labelled instances only. A few hundred MLM steps on the training
sentences (no labels) train the head and adapt the encoder to the domain first.

The result is an ordinary Hugging Face checkpoint directory. Its name hashes everything it
depends on (backbone, sentences, config), so every trial and seed with the same settings
shares one adaptation; it is written to a temporary directory and renamed when complete,
so a killed run never leaves a half-written cache behind.

With `head_only`, the encoder is frozen and run without gradients: only the head's own
parameters (its transform and output bias, not the decoder tied to the word embeddings) train.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from cloce import optim
from cloce.backbone import _quiet_transformers, load_masked_lm, resolve_model
from cloce.config import MlmAdaptConfig
from cloce.encoding import load_word_tokenizer
from cloce.mlm_head import MlmHead, mlm_logits
from cloce.model import encoder_inputs

CACHE_ENV = "CLOCE_CACHE_DIR"
INFO_FILE = "cloce_mlm_adapt.json"  # written last: a directory holding it is complete
CACHE_FORMAT = 1  # bump when the training procedure changes, so old caches are not reused


@dataclass
class AdaptedBackbone:
    path: Path  # load it like any Hugging Face checkpoint
    reused: bool  # found in the cache: nothing was trained now
    seconds: float  # this call's wall time (loading only, when reused)
    info: dict  # what INFO_FILE holds: inputs, training seconds, losses


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cloce")


def sentences_digest(sentences: Sequence[Sequence[str]]) -> str:
    """Content digest of the token lists, in order (the order changes which batches are drawn)."""
    digest = hashlib.sha256()
    for sentence in sentences:
        digest.update(json.dumps(list(sentence), ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def adapted_dir(backbone: str, digest: str, config: MlmAdaptConfig, cache_dir: Path) -> Path:
    # A local checkpoint is known by its absolute path, a hub model by its id (not by its
    # weights: hashing them would cost more than a cached adaptation saves on small runs).
    source = str(Path(backbone).resolve()) if Path(backbone).exists() else backbone
    settings = asdict(config)
    if not config.head_only:  # added later: left out at its neutral value, so older caches still count
        del settings["head_only"]
    key = json.dumps({"format": CACHE_FORMAT, "backbone": source, "sentences": digest, "config": settings},
                     sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).name)[:40] or "backbone"
    return cache_dir / "mlm_adapt" / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def adapt_backbone(
    backbone: str | None,
    sentences: Sequence[Sequence[str]],
    config: MlmAdaptConfig = MlmAdaptConfig(),
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> AdaptedBackbone:
    """The adapted checkpoint for (backbone, sentences, config): from the cache, else trained now.

    Concurrent callers on one machine (the trials of a study) wait for the first one's
    run instead of repeating it.
    """
    started = time.perf_counter()
    backbone = resolve_model(backbone)
    target = adapted_dir(backbone, sentences_digest(sentences), config, Path(cache_dir or default_cache_dir()))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / INFO_FILE).is_file():
            info = json.loads((target / INFO_FILE).read_text())
            return AdaptedBackbone(target, True, time.perf_counter() - started, info)
        if target.exists():  # not written by us (we only rename complete directories): replace it
            shutil.rmtree(target)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            info = train_masked_lm(backbone, sentences, config, scratch, torch.device(device))
            (scratch / INFO_FILE).write_text(json.dumps(info, indent=2))
            os.rename(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return AdaptedBackbone(target, False, time.perf_counter() - started, info)


def train_masked_lm(backbone: str, sentences: Sequence[Sequence[str]], config: MlmAdaptConfig,
                    out_dir: Path, device: torch.device) -> dict:
    """`config.steps` MLM steps over `sentences`; saves model + tokenizer to `out_dir`.

    The caller's random state is left as it was: a cached and a fresh adaptation must be
    followed by the same training.
    """
    from transformers import DataCollatorForLanguageModeling

    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(config.seed)  # the fresh head of a sentence encoder is drawn on loading
        tokenizer = load_word_tokenizer(backbone)
        # Random, as measured in experiments/results/mlm_adapt_probe.jsonl (and the cache holds).
        loaded = load_masked_lm(backbone, fresh_head_init="random")
        model = loaded.model.to(device)
        if config.head_only:
            freeze_all_but_head(model, loaded.head)
        examples = tokenize_sentences(tokenizer, sentences, config.max_length)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_probability,
                                                   seed=config.seed)
        order = torch.Generator().manual_seed(config.seed)
        optimizer = optim.model_adamw(model, config.lr, config.weight_decay)
        warmup = int(config.steps * config.warmup_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else (config.steps - s) / (config.steps - warmup)
        )

        model.train()
        losses: list[float] = []
        begun = time.perf_counter()
        lengths = [len(e["input_ids"]) for e in examples]
        for picked in _batches(lengths, config.batch_size, config.steps, order):
            batch = {k: v.to(device) for k, v in collator([examples[i] for i in picked]).items()}
            loss = masked_lm_loss(model, loaded.head, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - begun

    with _quiet_transformers():  # no progress bar for a one-file save
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
    window = max(1, min(50, len(losses) // 5))
    return {
        "backbone": backbone,
        "head_was_pretrained": loaded.head_pretrained,
        "sentences": len(sentences),
        "sentences_digest": sentences_digest(sentences),
        "config": asdict(config),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "train_seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / config.steps, 4),
        "loss_first": sum(losses[:window]) / window,  # mean over the first and last steps
        "loss_last": sum(losses[-window:]) / window,
    }


def _batches(lengths: Sequence[int], batch_size: int, steps: int, generator: torch.Generator):
    """`steps` batches of sentence indices, in shuffled passes over all sentences. Each pass is
    cut into chunks of 50 batches; a chunk is sorted by length before it is cut into batches,
    so a batch pads to little more than its own sentences' length (about half the compute of
    random batches on SemEval), while which sentences meet still changes with every pass."""
    chunk = 50 * batch_size
    done = 0
    while True:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
            batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            if done == steps:
                return
            yield batches[b]
            done += 1


def tokenize_sentences(tokenizer, sentences: Sequence[Sequence[str]], max_length: int) -> list[dict]:
    """Word pieces of each sentence with its special tokens, as the collator wants them: the
    joined text, tokenised as the tokenizer tokenises a sentence (pre-split words lose their
    leading space in a byte-level BPE such as ModernBERT's; WordPiece gives the same pieces)."""
    encoded = tokenizer([" ".join(s) for s in sentences], truncation=True,
                        max_length=max_length, return_special_tokens_mask=True)
    keys = [k for k in ("input_ids", "token_type_ids", "special_tokens_mask") if k in encoded]
    return [{k: encoded[k][i] for k in keys} for i in range(len(sentences))]


def freeze_all_but_head(model: nn.Module, head: MlmHead | str) -> None:
    """Only the head's own parameters train: the decoder weight tied to the word embeddings
    belongs to the encoder and stays frozen with it."""
    head = MlmHead((head,)) if isinstance(head, str) else head
    encoder = {id(p) for p in model.base_model.parameters()}
    model.requires_grad_(False)
    for param in head.parameters(model).values():
        if id(param) not in encoder:
            param.requires_grad_(True)


def masked_lm_loss(model: nn.Module, head: MlmHead | str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own MLM loss, with the head applied at the masked positions only: the
    vocabulary projection of the other ~85% adds nothing to the loss and would be most of
    the compute on a small encoder. A frozen encoder (head_only) records no graph: no
    parameter of it requires a gradient."""
    head = MlmHead((head,)) if isinstance(head, str) else head
    states = model.base_model(**encoder_inputs(model.base_model, batch)).last_hidden_state
    masked = batch["labels"] != -100
    if not masked.any():  # a tiny batch can draw no mask at all: a zero loss, no update
        # Zero through what trains: a frozen encoder's states carry no graph.
        anchor = states if states.requires_grad else mlm_logits(model, head, states[:0])
        return anchor.sum() * 0.0
    logits = mlm_logits(model, head, states[masked])
    return F.cross_entropy(logits.float(), batch["labels"][masked])


