"""The per-worker loop of a trial's Ray Train `TorchTrainer`: cloce's own loop, with Ray
only at the edges (prepare_model / prepare_data_loader / report with a checkpoint).

With workers, reports go to Ray Train, whose TuneReportCallback forwards them to the Tune
trial. In Ray Train's local mode (num_workers=0) the loop runs inside the Tune trial itself
and Train keeps reports to itself: they go to Tune directly, and a retried trial resumes
from Tune's checkpoint."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from cloce.config import DataConfig, TrainConfig
from cloce.run import per_sentence_test_labels, run_summary
from cloce.runtime import Runtime, bf16_active
from cloce.state import final_state, load_train_state, save_train_state
from study.trial import phases
from study.tracking import runs as tracking
from study.trial import warm
from study.trial.checkpoint_schedule import CheckpointSchedule
from study.trial.plugins import TrialInfo

FINAL_FILE = "final.json"


class RayReports:
    """Where this trial's reports and its last checkpoint live, and who this worker is: Ray
    Train's worker context, or (local mode: Ray refuses its Train context inside a Tune
    trial) Tune's, as the only worker."""

    def __init__(self, local_mode: bool):
        self.local_mode = local_mode

    def report(self, metrics: dict, checkpoint=None) -> None:
        import ray.train
        import ray.tune

        (ray.tune.report if self.local_mode else ray.train.report)(metrics, checkpoint=checkpoint)

    def checkpoint(self):
        import ray.train
        import ray.tune

        return ray.tune.get_checkpoint() if self.local_mode else ray.train.get_checkpoint()

    def world_size_and_rank(self) -> tuple[int, int]:
        import ray.train

        if self.local_mode:
            return 1, 0
        context = ray.train.get_context()
        return context.get_world_size(), context.get_world_rank()


class RayEpochReporter:
    """Reports each epoch (with a resumable checkpoint from rank 0) and, on rank 0, logs it to
    the trial's MLflow run."""

    def __init__(self, reports: RayReports, rank: int, tracking_uri: str | None, run_id: str | None,
                 best_so_far: float, plugins=(), trial: TrialInfo | None = None,
                 schedule: CheckpointSchedule | None = None):
        self.reports = reports
        self.schedule = schedule  # None: every epoch
        self.rank = rank
        self.plugins, self.trial = plugins, trial  # study/trial/plugins.py
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.best = best_so_far
        self.logged_steps: set[int] | None = None  # the run's logged epochs, read at this attempt's first epoch

    def on_epoch_end(self, record, pipeline, is_best, snapshot) -> None:
        import ray.train

        for plugin in self.plugins:
            plugin.before_report(record.epoch, self.trial)
        self.best = max(self.best, record.val_micro_f1)
        metrics = record.metrics() | {"best_val_micro_f1": self.best, "epochs_done": record.epoch}
        if self.rank != 0:
            self.reports.report(metrics)
            return
        if self.run_id:
            with phases.phase("tracking"):
                # Once per epoch: an epoch trained again after a restart is not logged twice.
                if self.logged_steps is None:  # read once per attempt; epochs only go up within it
                    self.logged_steps = tracking.logged_steps(self.tracking_uri, self.run_id, "val_micro_f1")
                tracking.log_epoch_metrics(self.tracking_uri, self.run_id, metrics, step=record.epoch,
                                           logged=self.logged_steps)
        if self.schedule is not None and not self.schedule.due(record.epoch, record.seconds):
            self.reports.report(metrics)  # the last checkpoint stays the one to resume from
            return
        with phases.phase("checkpoint"), tempfile.TemporaryDirectory(prefix="cloce-ckpt-") as directory:
            state = snapshot()
            if self.schedule is not None and record.epoch >= self.schedule.epochs:
                state = final_state(state)  # nothing left to train: the best weights are what resume needs
            save_train_state(state, directory)
            self.reports.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def train_loop_per_worker(loop_config: dict) -> dict:
    """Returns the trial's summary (what its final checkpoint holds): local mode reads it here."""
    import ray.train
    import ray.train.torch

    from cloce.train import NonFiniteLossError, train

    reports = RayReports(bool(loop_config.get("local_mode")))
    if not reports.local_mode:
        phases.reset()  # a worker process of its own: its phases travel in the summary (worker_*)
    world_size, rank = reports.world_size_and_rank()
    train_config = TrainConfig.from_dict(loop_config["train"])
    plugins = tuple(loop_config.get("plugins") or ())
    trial = TrialInfo(train_config.variant, train_config.seed, loop_config.get("run_name", "trial"), rank)

    def plugged(model):
        for plugin in plugins:
            model = plugin.prepare_model(model, trial)
        return model

    device = ray.train.torch.get_device()
    if reports.local_mode:
        # One worker, no process group: Ray's prepare_* would only move to the device (and
        # they read the Train context Ray refuses inside a Tune trial).
        runtime = Runtime(device=device, prepare_model=lambda model: plugged(model).to(device))
    else:
        runtime = Runtime(
            device=device,
            # CLoCE-S's contrastive pass touches only the embeddings: DDP must allow unused parameters.
            prepare_model=lambda model: ray.train.torch.prepare_model(
                plugged(model), parallel_strategy_kwargs={"find_unused_parameters": True}
            ),
            # cloce's batch sampler gives each worker its share of the global batches: kept as is.
            prepare_loader=lambda loader: ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False),
            world_size=world_size,
            rank=rank,
        )
    with phases.phase("data"):  # a reused trial process reads it once (study/trial/warm.py)
        dataset = warm.dataset(DataConfig(**loop_config["data"]))

    resume = None
    checkpoint = reports.checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            ended = read_summary(Path(directory))
            resume = None if ended is not None else load_train_state(directory)
        if ended is not None:
            # The trial had reported its end when its driver was killed; restored, it starts
            # again from that last checkpoint: report the same end instead of training again.
            return report_ended(reports, runtime.rank, ended)
    best_so_far = max((r["val_micro_f1"] for r in resume.history), default=0.0) if resume else 0.0
    every_s = float(loop_config.get("checkpoint_every_s") or 0.0)
    schedule = CheckpointSchedule(every_s, train_config.epochs) if every_s > 0 else None
    reporter = RayEpochReporter(reports, runtime.rank, loop_config.get("tracking_uri"), loop_config.get("run_id"),
                                best_so_far, plugins, trial, schedule)
    # What changes the trial's numbers and is known only here (the driver's fingerprint can only
    # expect it: StudyConfig.cell_fingerprint); an attempt resumed elsewhere overwrites the tags.
    numbers_setup = {"bf16_active": int(bf16_active(device, train_config.bf16)), "world_size": runtime.world_size}
    if runtime.rank == 0 and loop_config.get("run_id"):
        with phases.phase("tracking"):
            tag_placement(loop_config["tracking_uri"], loop_config["run_id"], device,
                          len(resume.history) if resume else 0, numbers_setup)

    try:
        with phases.phase("train"):  # the loop itself; its checkpoints and tracking are phases of their own
            result = train(train_config, dataset, [reporter], runtime, resume=resume)
    except NonFiniteLossError as err:
        # Deterministic: a retry from the last checkpoint would only diverge again.
        return report_failure(reports, runtime.rank, f"non-finite loss: {err}")
    final = run_summary(result) | {
        "best_val_micro_f1": result.best_val.micro_f1,
        "epochs_done": len(result.history),
        "final": 1,
        "kshot_size": len(result.sample.ids) if result.sample else 0,
        # train.sentence_markers None decides by the labels: what it decided.
        "sentence_markers_active": int(result.pipeline.sentence_markers),
        **numbers_setup,
        **({} if reports.local_mode else {f"worker_{name}": value for name, value in phases.report().items()}),
    }
    final = {k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary = final | {"history": [vars(r) for r in result.history]}
    if result.test is not None:  # per test sentence, for the paired bootstrap of the study tables
        summary["test_labels"] = per_sentence_test_labels(result)
    if runtime.rank != 0:
        reports.report(final)
        return summary
    uri, run_id = loop_config.get("tracking_uri"), loop_config.get("run_id")
    if run_id:
        with phases.phase("tracking"):
            # Per-epoch val F1 is already logged with step=epoch; the summary keeps its own names.
            summary_keys = ("best_val_micro_f1", "best_epoch", "epochs_done", "test_micro_f1", "test_macro_f1_semeval",
                            "sentence_markers_active")
            tracking.log_metrics(uri, run_id, {k: final[k] for k in summary_keys if k in final})
            if result.sample is not None:
                tracking.log_json(uri, run_id, result.sample.to_json(), "kshot_sample.json")
            tracking.log_json(uri, run_id, [vars(r) for r in result.history], "history.json")
            if result.test is not None:
                tracking.log_json(uri, run_id, result.test.to_dict(), "test_eval.json")
    report_final(reports, final, summary)
    return summary


def report_final(reports: "RayReports", final: dict, summary: dict) -> None:
    import ray.train

    # The result the driver reads is the last checkpointed report: carry the summary and
    # the per-epoch history (the tables' input) in that final checkpoint.
    with tempfile.TemporaryDirectory(prefix="cloce-final-") as directory:
        (Path(directory) / FINAL_FILE).write_text(json.dumps(summary))
        reports.report(final, checkpoint=ray.train.Checkpoint.from_directory(directory))


def read_summary(directory: Path) -> dict | None:
    """The summary in a trial's final checkpoint; None in a training checkpoint."""
    path = directory / FINAL_FILE
    return json.loads(path.read_text()) if path.exists() else None


def report_ended(reports: "RayReports", rank: int, summary: dict) -> dict:
    """Report again the end a restored trial had already reported (finished or failed)."""
    if "error" in summary:
        return report_failure(reports, rank, summary["error"])
    final = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if rank != 0:
        reports.report(final)
    else:
        report_final(reports, final, summary)
    return summary


def tag_placement(uri: str, run_id: str, device, from_epoch: int, extra: dict | None = None) -> None:
    """Where this attempt of the trial trains (and `extra` tags), in one request: `node` (the node's `cloce-node` label, else its
    host name), `node_id` (Ray's), `node_ip`, `device`; `placements` keeps every attempt
    (`node:from_epoch`, comma separated), so a trial moved by a lost node shows both."""
    import socket

    import ray

    context = ray.get_runtime_context()
    labels = context.get_node_labels() or {}
    node = str(labels.get("cloce-node") or socket.gethostname())
    earlier = tracking.get_tag(uri, run_id, "placements")
    placements = [p for p in (earlier or "").split(",") if p] + [f"{node}:{from_epoch}"]
    tracking.set_tags(uri, run_id, {
        "node": node, "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
        "device": str(device), "placements": ",".join(placements), "resumed_from_epoch": from_epoch,
    } | (extra or {}))


def report_failure(reports: RayReports, rank: int, reason: str) -> dict:
    """End the trial without a retry; the driver marks it failed with this reason."""
    import ray.train

    summary = {"error": reason}
    # Tune refuses a report without the objective its searcher (Optuna, a cell's seed list)
    # was given, failing the whole cell: NaN, which no searcher or scheduler takes as a score.
    failed = {"failed": 1, "best_val_micro_f1": float("nan")}
    if rank != 0:
        reports.report(failed)
        return summary
    with tempfile.TemporaryDirectory(prefix="cloce-failed-") as directory:
        (Path(directory) / FINAL_FILE).write_text(json.dumps(summary))
        reports.report(failed, checkpoint=ray.train.Checkpoint.from_directory(directory))
    return summary


def read_final(checkpoint) -> dict:
    """The summary a finished trial left in its last checkpoint (see train_loop_per_worker)."""
    with checkpoint.as_directory() as directory:
        return read_summary(Path(directory)) or {}

