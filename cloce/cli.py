"""`python -m cloce train ...`, `python -m cloce adapt ...` and `python -m cloce predict ...`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing

from cloce.config import ConfigError, DataConfig, MlmAdaptConfig, TrainConfig
from cloce.variants import VARIANTS

TRAIN_HELP = {
    "variant": "which method: " + ", ".join(VARIANTS),
    "model": "Hugging Face model id or local path (default: the bundled all-MiniLM-L6-v2)",
    "k": "K-shot: instances per relation sampled from train (0 = the full training set)",
    "seed": "seed of the K-shot sample and of training (the paper uses 1..5)",
    "kshot_sampler": "how the K-shot set is drawn: knowprompt (KnowPrompt's own sets: seed s after the "
                     "shuffles of seeds 1..s-1) or per_label (each label drawn on its own)",
    "ptr_rules_file": "ptr: PTR's rules in its temp.txt format (each relation's head word, relation words and tail "
                      "word); default: derived from the labels and the K-shot set (cloce/ptr.py)",
    "ke_weight": "knowprompt: weight of its KE (structured-constraint) loss; 0 = none",
    "virtual_lr": "knowprompt: learning rate of the word embeddings that hold its virtual words (default: --lr)",
    "kshot_val": "validate on a K-shot sample of val (same K and seed) instead of all of val",
    "test_sample": "test on a fixed random subset of this many test sentences, the same for every run "
                   "(default: the whole test set)",
    "val_sample": "validate on a fixed random subset of this many val sentences, the same for every run "
                  "(default: all of val)",
    "epochs": "training epochs (each: cross-entropy pass, contrastive step for cloce_*, validation)",
    "batch_size": "training batch size",
    "length_grouped": "batch training instances of similar length (less padding, ~15%% faster on CPU; "
                      "learned worse in our few-shot runs, so off by default)",
    "eval_batch_size": "batch size for validation, test and prediction",
    "lr": "learning rate of the classification (cross-entropy) step",
    "weight_decay": "AdamW weight decay (not on biases, LayerNorm or embeddings)",
    "warmup_ratio": "fraction of steps with linear learning-rate warm-up, then linear decay",
    "grad_clip": "gradient-norm clip of the classification step",
    "max_seq_len": "longest input in word pieces; only the sentence is cut, never the prompt",
    "cl_lr": "learning rate of the contrastive step (its own optimiser)",
    "cl_batch_size": "contrastive pairs per optimiser step",
    "margin": "margin m of the contrastive loss (cosine distance, in [0, 2])",
    "trainable_margin": "train m as well, kept inside [margin-low, margin-high]",
    "margin_low": "lower bound of a trainable margin",
    "margin_high": "upper bound of a trainable margin",
    "cl_vector": "CLoCE-D sentence vector: 'mask' ([MASK] state) or 'mean' (mean-pooled encoder states)",
    "fresh_head_init": "how the MLM head transform starts when the checkpoint has none (the bundled MiniLM): "
                       "'identity' (the [MASK] state as the encoder made it) or 'random'",
    "sentence_markers": "prompt variants: mark the entities in the sentence too (@ head @ ... # tail #), "
                        "as the fine-tuning input does; None: on exactly when the labels are directed "
                        "(SemEval's Type(e1,e2)); --no-sentence-markers: the paper's template",
    "label_init": "prompt variants: how a soft label starts: 'name' (its readable name, e.g. 'cause effect' for both "
                  "directions) or 'role' (the head's role word: 'cause' for Cause-Effect(e1,e2), 'effect' for (e2,e1))",
    "template": "prompt variants: 'relation_of' (the relation of [T_h] head and [T_t] tail is [MASK], the paper's) or "
                "'role_of' ([T_h] head is the [MASK] of [T_t] tail: the head's role, as --label-init role names it)",
    "mlm_adapt_steps": "masked-LM adaptation of the backbone on the unlabelled train sentences before "
                       "prompt-tuning, in steps (prompt variants only; 0 = off); cached and shared by every run",
    "mlm_adapt_lr": "learning rate of the masked-LM adaptation",
    "mlm_adapt_batch_size": "sentences per masked-LM adaptation step",
    "mlm_adapt_head_only": "masked-LM adaptation of the MLM head only, the encoder frozen (cached apart from "
                           "the full adaptation)",
    "cache_dir": "where adapted backbones are cached (default: $CLOCE_CACHE_DIR, else ~/.cache/cloce)",
    "device": "'auto' (cuda when present), 'cpu', 'cuda', 'cuda:1'...",
    "compile": "torch.compile the encoder (dynamic shapes); the first batches pay the compile time",
    "bf16": "bf16 autocast where the device computes bf16 natively (GPUs with bf16, CPUs with AVX512-BF16 or "
            "AMX; ~1.6x faster training on such a CPU core); fp32 elsewhere",
    "num_threads": "CPU threads for torch (default: all cores)",
}

ADAPT_HELP = {
    "steps": "optimiser steps (each a batch of sentences; reshuffled after every pass over them)",
    "lr": "learning rate (linear warm-up, then linear decay)",
    "batch_size": "sentences per step",
    "mask_probability": "fraction of word pieces masked, as BERT",
    "max_length": "longest sentence in word pieces, special tokens included",
    "seed": "seed of the fresh MLM head, the sentence order and the masking",
    "weight_decay": "AdamW weight decay (not on biases, LayerNorm or embeddings)",
    "warmup_ratio": "fraction of steps with linear learning-rate warm-up",
    "grad_clip": "gradient-norm clip",
    "head_only": "train the MLM head only, the encoder frozen (cached apart from the full adaptation)",
}


def _add_config_flags(parser: argparse.ArgumentParser, config_class=TrainConfig, help_texts=TRAIN_HELP) -> None:
    """One flag per field of a config dataclass; a bool is a switch (argparse's type=bool would
    read "--head-only False" as True)."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{help_texts[field.name]} (default: {field.default})"
        hint = hints[field.name]
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kind = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
        if kind is bool:  # bool | None: neither switch leaves the field's own default (None: decided later)
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
            continue
        if typing.get_origin(kind) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), default=field.default, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=field.default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cloce", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one variant on one K-shot sample, then test the best epoch")
    data = train.add_argument_group("data")
    data.add_argument("--data-dir", help="folder with train/val(dev)/test files and optional rel2id.json "
                      "(default: $CLOCE_DATA_DIR, else ../shared/datasets/semeval beside a checkout)")
    data.add_argument("--train", help="training file (overrides the one in --data-dir)")
    data.add_argument("--val", help="validation file")
    data.add_argument("--test", help="test file")
    data.add_argument("--format", choices=("auto", "tacred", "opennre"), default="auto",
                      help="input format: TACRED json or OpenNRE/SemEval jsonl (default: detect)")
    data.add_argument("--kshot-dir", help="ready-made K-shot sets, <dir>/<K>-<seed>/train.txt as KnowPrompt and "
                      "DeepKE write them (with their own val/test where present); --k and --seed pick one")
    train.add_argument("--output-dir", default="outputs/run", help="where the checkpoint, history and reports go")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(train.add_argument_group("method and hyper-parameters"))

    adapt = commands.add_parser("adapt", help="masked-LM adaptation of a backbone on a data set's train "
                                "sentences (what `train --mlm-adapt-steps` does), cached; prints its directory")
    adapt.add_argument("--data-dir", help="folder with the data set (default: as for `train`)")
    adapt.add_argument("--train", help="training file (overrides the one in --data-dir)")
    adapt.add_argument("--format", choices=("auto", "tacred", "opennre"), default="auto")
    adapt.add_argument("--model", help="Hugging Face model id or local path (default: the bundled all-MiniLM-L6-v2)")
    _add_config_flags(adapt, MlmAdaptConfig, ADAPT_HELP)
    adapt.add_argument("--cache-dir", help=TRAIN_HELP["cache_dir"])
    adapt.add_argument("--device", default="auto")
    adapt.add_argument("--num-threads", type=int, help=TRAIN_HELP["num_threads"])

    predict = commands.add_parser("predict", help="predict relations for a file with a saved checkpoint")
    predict.add_argument("--checkpoint", required=True, help="a checkpoint directory written by `train`")
    predict.add_argument("--input", required=True, help="input file, same formats as training data")
    predict.add_argument("--output", help="jsonl output (default: stdout)")
    predict.add_argument("--format", choices=("auto", "tacred", "opennre"), default="auto")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--device", default="auto")
    return parser


class ProgressBar:
    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="epochs", unit="epoch", disable=not enabled, file=sys.stderr)

    def on_epoch_end(self, record, pipeline, is_best, snapshot) -> None:
        self.bar.set_postfix(loss=f"{record.train_loss:.3f}", val_f1=f"{record.val_micro_f1:.3f}")
        self.bar.update(1)


def _train(args) -> int:
    from cloce.run import run_training

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values["k"] = values["k"] or None
    config = TrainConfig(**values)
    data = DataConfig(args.data_dir, args.train, args.val, args.test, args.format, args.kshot_dir)
    progress = ProgressBar(config.epochs, enabled=not args.no_progress)
    result = run_training(config, data, args.output_dir, callbacks=[progress])
    progress.bar.close()
    if result.pipeline.head_summary:
        print(result.pipeline.head_summary)
    line = f"val micro-F1 {result.best_val.micro_f1:.4f} (best epoch {result.best_epoch})"
    if result.test is not None:
        line += f" | test micro-F1 {result.test.micro_f1:.4f}"
        if result.test.macro_f1_semeval is not None:
            line += f" | test SemEval macro-F1 {result.test.macro_f1_semeval:.4f}"
    print(line + f" | outputs in {args.output_dir}")
    return 0


def _adapt(args) -> int:
    from cloce.data.dataset import load_dataset
    from cloce.data.readers import read_instances
    from cloce.mlm_adapt import adapt_backbone
    from cloce.runtime import pick_device, set_threads

    set_threads(args.num_threads)
    config = MlmAdaptConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(MlmAdaptConfig)})
    # Only the train sentences are read (their tokens, not their labels).
    train = read_instances(args.train, args.format) if args.train else load_dataset(args.data_dir).train
    adapted = adapt_backbone(args.model, [i.tokens for i in train], config, args.cache_dir,
                             pick_device(args.device))
    info = adapted.info
    how = "reused from the cache" if adapted.reused else f"trained in {info['train_seconds']:.1f} s"
    print(f"MLM loss {info['loss_first']:.3f} -> {info['loss_last']:.3f} over {config.steps} steps, {how}",
          file=sys.stderr)
    print(adapted.path)
    return 0


def _predict(args) -> int:
    from cloce.predict import predict_file

    rows = predict_file(args.checkpoint, args.input, args.output, args.format, args.batch_size, args.device)
    if args.output is None:
        for row in rows:
            print(json.dumps(row))
    else:
        print(f"{len(rows)} predictions written to {args.output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from cloce.data.types import DataError

    if _bundled_only(argv):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "adapt": _adapt, "predict": _predict}[args.command](args)
    except (ConfigError, DataError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _bundled_only(argv) -> bool:
    """No --model given: nothing to fetch from a hub, so never try the network."""
    return "--model" not in (argv if argv is not None else sys.argv[1:])
