"""One training run from configs to an output directory: what the CLI and the study call."""
from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from typing import Sequence

from cloce.checkpoint import save_checkpoint
from cloce.config import DataConfig, TrainConfig
from cloce.data.dataset import load_dataset
from cloce.metrics import format_report
from cloce.runtime import Runtime
from cloce.records import EpochCallback, TrainResult
from cloce.train import train


def check_writable(directory: str | Path, min_free_bytes: int = 0) -> Path:
    """Fail before training, not after hours of it, when results cannot be written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise OSError(f"output directory {directory} is not writable: {err.strerror or err}") from None
    free = shutil.disk_usage(directory).free
    if free < min_free_bytes:
        raise OSError(f"output directory {directory}: only {free / 2**20:.0f} MiB free on its disk, "
                      f"at least {min_free_bytes / 2**20:.0f} MiB needed for checkpoints and results")
    return directory


def run_training(
    train_config: TrainConfig,
    data_config: DataConfig,
    output_dir: str | Path | None,
    callbacks: Sequence[EpochCallback] = (),
    runtime: Runtime | None = None,
    backbone_config=None,
) -> TrainResult:
    out = check_writable(output_dir, min_free_bytes=256 << 20) if output_dir is not None else None
    dataset = load_dataset(
        data_config.data_dir, train=data_config.train, val=data_config.val, test=data_config.test, fmt=data_config.format,
        kshot_dir=data_config.kshot_dir,
    )
    started = time.perf_counter()
    result = train(train_config, dataset, callbacks, runtime, backbone_config)
    if out is not None and (runtime is None or runtime.is_main):
        write_outputs(result, dataset.files, out, time.perf_counter() - started)
    return result


def run_summary(result: TrainResult) -> dict:
    summary = {
        "variant": result.config.variant,
        "k": result.config.k,
        "seed": result.config.seed,
        "best_epoch": result.best_epoch,
        "val_micro_f1": result.best_val.micro_f1,
        "val_macro_f1_semeval": result.best_val.macro_f1_semeval,
    }
    if result.test is not None:
        summary |= {"test_micro_f1": result.test.micro_f1, "test_macro_f1_semeval": result.test.macro_f1_semeval}
        if result.test.direction is not None:  # directed labels (SemEval): right type, wrong direction
            summary |= {"test_wrong_direction_rate": result.test.direction.wrong_direction_rate,
                        "test_undirected_accuracy": result.test.direction.undirected_accuracy}
    return summary


def per_sentence_test_labels(result: TrainResult) -> dict | None:
    """Each test sentence's gold and predicted label id, and the no-relation id: what a paired
    bootstrap over the test sentences needs (study/reporting/comparisons.py). None when nothing was tested."""
    if result.test is None:
        return None
    return {"gold": list(result.test_gold), "pred": list(result.test_predictions),
            "no_relation_id": result.pipeline.label_map.no_relation_id}


def write_outputs(result: TrainResult, files: dict, out: Path, seconds: float) -> None:
    pipeline = result.pipeline
    save_checkpoint(pipeline, out / "checkpoint", extra={"train_config": result.config.to_dict()})
    params = {
        "train_config": result.config.to_dict(),
        "data_files": files,
        "entity_types": list(pipeline.type_names),
        "generic_type_only": pipeline.type_names == ("entity",),
        **({"ptr_rules": pipeline.ptr_rules.to_json()} if pipeline.ptr_rules else {}),
        "mlm_head_pretrained": pipeline.head_pretrained,
        "mlm_head": "+".join(pipeline.head_parts) or None,  # the masked LM's children that score [MASK]
        "backbone": pipeline.model_name,
        "sentence_markers_active": pipeline.sentence_markers,  # train_config None: the labels decided
        "bf16_active": result.bf16_active,  # train_config.bf16 only asks: the device decides
        # The adapted checkpoint's inputs and its training cost (seconds) when it was trained.
        "mlm_adapt": None if result.mlm_adapt is None else result.mlm_adapt.info | {
            "path": str(result.mlm_adapt.path), "reused": result.mlm_adapt.reused},
        "python": platform.python_version(),
    }
    _write_json(out / "params.json", params)
    _write_json(out / "history.json", [vars(r) for r in result.history])
    if result.sample is not None:
        _write_json(out / "kshot_sample.json", result.sample.to_json())
    _write_json(out / "metrics.json", run_summary(result) | {"seconds": seconds})
    (out / "val_report.txt").write_text(format_report(result.best_val))
    _write_json(out / "val_eval.json", result.best_val.to_dict())
    if result.test is not None:
        (out / "test_report.txt").write_text(format_report(result.test))
        _write_json(out / "test_eval.json", result.test.to_dict())


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2))
