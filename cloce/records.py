"""What the training loop reports: an EpochRecord per epoch (to its callbacks, and in the
history a resume checkpoint carries), and the TrainResult at the end."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from cloce.config import TrainConfig
from cloce.data.sampling import KShotSample
from cloce.metrics import Evaluation
from cloce.mlm_adapt import AdaptedBackbone
from cloce.pipeline import RelationPipeline
from cloce.state import TrainState


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_micro_f1: float
    val_macro_f1_semeval: float | None
    val_accuracy: float | None = None  # the paper's Figure 3 plots it; None in older histories
    cl_loss: float | None = None
    pairs: dict[str, int] = field(default_factory=dict)
    margin: float | None = None
    seconds: float = 0.0
    ce_seconds: float = 0.0
    cl_seconds: float = 0.0
    val_seconds: float = 0.0
    train_samples_per_s: float = 0.0

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics, as trackers want them."""
        flat = {k: v for k, v in vars(self).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        flat.update({k: float(v) for k, v in self.pairs.items()})
        return flat


class EpochCallback(Protocol):
    """Called after every epoch's validation (the study system reports to Ray from here).

    `snapshot()` returns the full TrainState to continue from this epoch; it copies the
    weights, so only a callback that checkpoints should call it.
    """

    def on_epoch_end(
        self, record: EpochRecord, pipeline: RelationPipeline, is_best: bool, snapshot: Callable[[], TrainState]
    ) -> None: ...


@dataclass
class TrainResult:
    config: TrainConfig
    pipeline: RelationPipeline
    sample: KShotSample | None
    history: list[EpochRecord]
    best_epoch: int
    best_val: Evaluation
    test: Evaluation | None
    test_predictions: list[int]
    mlm_adapt: AdaptedBackbone | None = None  # the adapted backbone the prompt variant loaded, if any
    bf16_active: bool = False  # bf16 autocast really ran (config.bf16 asks; the device decides)
    test_gold: list[int] = field(default_factory=list)  # gold label ids, in test_predictions' order
