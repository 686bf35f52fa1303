"""`python -m cloce train ...` and `python -m cloce predict ...`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing

from cloce.config import ConfigError, DataConfig, TrainConfig
from cloce.variants import VARIANTS

TRAIN_HELP = {
    "variant": "which method: " + ", ".join(VARIANTS),
    "model": "Hugging Face model id or local path (default: the bundled all-MiniLM-L6-v2)",
    "k": "K-shot: instances per relation sampled from train (0 = the full training set)",
    "seed": "seed of the K-shot sample and of training (the paper uses 1..5)",
    "kshot_val": "validate on a K-shot sample of val (same K and seed) instead of all of val",
    "test_sample": "test on a fixed random subset of this many test sentences, the same for every run "
                   "(default: the whole test set)",
    "epochs": "training epochs (each: cross-entropy pass, contrastive step for cloce_*, validation)",
    "batch_size": "training batch size",
    "length_grouped": "batch training instances of similar length (less padding, faster); "
                      "--no-length-grouped: plain random batches",
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
    "device": "'auto' (cuda when present), 'cpu', 'cuda', 'cuda:1'...",
    "bf16": "bf16 autocast (GPUs with bf16 support)",
    "num_threads": "CPU threads for torch (default: all cores)",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{TRAIN_HELP[field.name]} (default: {field.default})"
        hint = hints[field.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
            continue
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kind = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
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
                      "(default: $CLOCE_DATA_DIR, else ../shared/datasets/semeval)")
    data.add_argument("--train", help="training file (overrides the one in --data-dir)")
    data.add_argument("--val", help="validation file")
    data.add_argument("--test", help="test file")
    data.add_argument("--format", choices=("auto", "tacred", "opennre"), default="auto",
                      help="input format: TACRED json or OpenNRE/SemEval jsonl (default: detect)")
    train.add_argument("--output-dir", default="outputs/run", help="where the checkpoint, history and reports go")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(train.add_argument_group("method and hyper-parameters"))

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
    data = DataConfig(args.data_dir, args.train, args.val, args.test, args.format)
    progress = ProgressBar(config.epochs, enabled=not args.no_progress)
    result = run_training(config, data, args.output_dir, callbacks=[progress])
    progress.bar.close()
    line = f"val micro-F1 {result.best_val.micro_f1:.4f} (best epoch {result.best_epoch})"
    if result.test is not None:
        line += f" | test micro-F1 {result.test.micro_f1:.4f}"
        if result.test.macro_f1_semeval is not None:
            line += f" | test SemEval macro-F1 {result.test.macro_f1_semeval:.4f}"
    print(line + f" | outputs in {args.output_dir}")
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
        return _train(args) if args.command == "train" else _predict(args)
    except (ConfigError, DataError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _bundled_only(argv) -> bool:
    """No --model given: nothing to fetch from a hub, so never try the network."""
    return "--model" not in (argv if argv is not None else sys.argv[1:])
