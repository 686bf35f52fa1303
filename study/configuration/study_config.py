"""Typed study configuration: one TOML file under experiments/ plus CLI overrides, validated once.

A study is a grid of (variant, K) cells. Stage 1 searches each cell's hyper-parameters with
Optuna on the K-shot sample of `search.search_seed` (choosing on val, never on test); stage 2
trains every seed of `study.seeds` with the chosen values.

    [study]             name, description, data_dir, data_format, model, variants, ks, seeds,
                        requires_data_dir, kshot_dir (ready-made K-shot sets, <dir>/<K>-<seed>/train.txt:
                        the sets of the K and seed axes, instead of train.kshot_sampler's draw)
    [train]             fixed TrainConfig fields of every trial (variant, k, seed and model
                        come from [study])
    [search]            num_samples, search_seed, max_concurrent_trials (per cell; 0: all), asha,
                        grace_period, enabled
    [resources]         workers_per_trial, use_gpu, cpus_per_worker, gpus_per_worker, max_failures,
                        max_running_trials (the whole study; 0: what the cluster holds), cells_in_parallel,
                        checkpoint_every_s
    [spaces.<variant>]  lr, cl_lr = [low, high] (log-uniform), margin = [low, high] (uniform),
                        virtual_lr = [low, high] (knowprompt: its virtual words' lr, log-uniform);
                        a key left out keeps DEFAULT_SPACES' range, `[]` fixes it at [train]'s
                        value, a number fixes it at that number (not searched; a cell with
                        nothing left to search runs its seeds only);
                        lr = "<variant>" takes the lr that variant's search chose at the same K
                        (listed earlier in study.variants): cloce_s/cloce_d on prompt_ki's lr
                        spend their search on what the contrastive step adds

A searched parameter overrides the same [train] key. With `search.enabled = false` it takes
its [train] value when there is one, else the midpoint of its range (`default_hyperparams`).
`data_dir = ""` (or left out) means the SemEval default unless `requires_data_dir = true`:
then the runner must be given --data-dir (the file loads without it). A relative data_dir is
relative to the repository root, not to the working directory (trials run elsewhere), so
`data_dir = "../shared/datasets/scierc"` finds the shared copy beside any clone; the cell
fingerprint keeps it as written, so a results file stays valid in another clone.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cloce.checkout import checkout_root
from cloce.config import DataConfig, TrainConfig
from cloce.variants import VARIANTS, get_variant
from study.datasets import is_bundled

CONTRASTIVE_VARIANTS = tuple(name for name, v in VARIANTS.items() if v.contrastive != "none")
MARGIN_BOUNDS = (0.0, 2.0)
LOG_UNIFORM = ("lr", "cl_lr", "virtual_lr")  # searched on a log scale; margin is uniform
# Which variants have which search parameter beside lr (the others' [spaces] allow lr only).
VARIANT_PARAMETERS = {name: ("cl_lr", "margin") if v.contrastive != "none" else ("virtual_lr",) if v.head == "knowprompt" else ()
                      for name, v in VARIANTS.items()}
# TrainConfig fields a trial gets from the study itself, never from [train].
SET_BY_STUDY = {"variant": "study.variants", "k": "study.ks", "seed": "study.seeds", "model": "study.model"}


class StudyConfigError(ValueError):
    """All problems of one study file at once; each names the file and the dotted key."""

    def __init__(self, path: str | Path, problems: list[str], note: str = "") -> None:
        self.path, self.problems = str(path), list(problems)
        lines = "\n".join(f"  {self.path}: {p}" for p in self.problems)
        super().__init__(f"study config {self.path}{note}: {len(self.problems)} problem(s)\n{lines}")


@dataclass(frozen=True)
class SearchSpace:
    """Each parameter: a (low, high) range to search, one number (fixed, not searched: e.g.
    the lr an earlier study chose on val), or None (not searched: [train]'s value)."""
    lr: tuple[float, float] | float  # classification lr, log-uniform
    cl_lr: tuple[float, float] | float | None = None  # contrastive lr, log-uniform (cloce_s / cloce_d)
    margin: tuple[float, float] | float | None = None  # uniform (cloce_s / cloce_d)
    virtual_lr: tuple[float, float] | float | None = None  # knowprompt's virtual words, log-uniform; None: [train]'s
    # Not searched: the lr chosen for this variant's cell at the same K (study.driver.cells.run_cell_stages).
    lr_from: str | None = None


@dataclass(frozen=True)
class SearchConfig:
    num_samples: int  # Optuna trials per (variant, K) cell
    search_seed: int = 1  # K-shot sample seed of stage 1, and the Optuna sampler seed
    # Trials of one cell at a time, each stage; 0: all of them (every cell runs at once anyway:
    # study/driver/pool.py). 1 makes TPE past its random start-up independent of completion order.
    max_concurrent_trials: int = 0
    asha: bool = False
    grace_period: int = 1  # epochs before ASHA may stop a trial
    enabled: bool = True  # False: no stage 1; fixed values (see default_hyperparams)


@dataclass(frozen=True)
class ResourcesConfig:
    # 0: Ray Train's local mode, the training loop runs in the Tune trial's own process (no
    # worker group, no controller): seconds less per trial, for short trials on one machine.
    workers_per_trial: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    gpus_per_worker: float = 1.0
    max_failures: int = 1  # retries of a failed trial from its checkpoint (Ray Train's, Tune's in local mode); -1: forever
    max_running_trials: int = 0  # trials of the whole study at once; 0: as many as the cluster holds
    cells_in_parallel: bool = True  # False: one (variant, K) cell after another, as before the pool
    # A trial checkpoints its last epoch, and an earlier one only when waiting for the next epoch
    # would leave more than this many seconds of training unsaved (study/trial/checkpoint_schedule.py): a
    # killed trial loses at most this much. 0: every epoch. Changes no number.
    checkpoint_every_s: float = 0.0


@dataclass(frozen=True)
class StudyConfig:
    name: str
    description: str
    data_dir: str | None  # None: SemEval default; relative: to the repository root
    data_format: str  # auto / tacred / opennre
    model: str | None  # None: the bundled default backbone
    variants: tuple[str, ...]
    ks: tuple[int, ...]  # 0: the full training set
    seeds: tuple[int, ...]  # stage-2 seeds
    train: dict[str, object]
    search: SearchConfig
    spaces: dict[str, SearchSpace]
    resources: ResourcesConfig
    requires_data_dir: bool = False  # the data has no default location: --data-dir is mandatory
    kshot_dir: str | None = None  # ready-made K-shot sets (cloce/data/kshot_sets.py); relative: as data_dir

    @property
    def kshot_sampler(self) -> str:
        """[train]'s K-shot sampler, one for every trial (no search or cell sets it)."""
        return str(self.train.get("kshot_sampler", TrainConfig.kshot_sampler))

    def kshot_sets(self) -> str:
        """Which K-shot sets the study's trials train on, as its tables and runs name them."""
        return f"folder {self.kshot_dir}" if self.kshot_dir else self.kshot_sampler

    def with_label_decisions(self, label_map) -> "StudyConfig":
        """`train.sentence_markers` left to the data (unset) decided by its labels, as each trial
        would decide it: the fingerprint and the parent run then say what runs."""
        from cloce.sentence_markers import markers_by_default

        if self.train.get("sentence_markers") is not None:
            return self
        return replace(self, train={**self.train, "sentence_markers": markers_by_default(label_map)})

    def search_space(self, variant: str) -> SearchSpace:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        return self.spaces.get(variant, DEFAULT_SPACES[variant])

    def searched(self, variant: str) -> dict[str, tuple[float, float]]:
        """The parameters the variant's search draws, with their ranges (none: no search runs)."""
        space = asdict(self.search_space(variant))
        if space.pop("lr_from"):
            space.pop("lr")  # taken from another cell
        return {name: span for name, span in space.items() if isinstance(span, tuple)}

    def fixed_hyperparams(self, variant: str) -> dict[str, float]:
        """The parameters the space fixes to one number."""
        space = asdict(self.search_space(variant))
        return {name: span for name, span in space.items() if isinstance(span, float)}

    def default_hyperparams(self, variant: str) -> dict[str, float]:
        """Values of the searched parameters when there is no search: fixed ones as given, the
        others [train]'s, else the midpoint."""
        values = {}
        for name, span in asdict(self.search_space(variant)).items():
            if span is None or name == "lr_from":
                continue
            if isinstance(span, float):
                values[name] = span
                continue
            low, high = span
            midpoint = math.sqrt(low * high) if name in LOG_UNIFORM else (low + high) / 2
            values[name] = self.train.get(name, midpoint)
        return values

    def train_config(self, variant: str, k: int, seed: int, **hyperparams) -> TrainConfig:
        """One trial's TrainConfig: [train], then the trial's hyper-parameters, then the cell."""
        cell = {"variant": variant, "model": self.model, "k": k or None, "seed": seed}
        return TrainConfig(**{**self.train, **hyperparams, **cell})

    def cell_fingerprint(self, variant: str, k: int) -> str:
        """What a (variant, K) cell's trial results depend on: its training config (but the
        seed), data, model, search space and search seed / early stopping, and how the trials
        will run (`numbers_setup`). A results file's records count for a cell only under the
        same fingerprint."""
        train = self.train_config(variant, k, 0).to_dict()
        if train["sentence_markers"] is None and get_variant(variant).head != "marker":
            # Undecided, the hash would match no record made under either value.
            raise ValueError(f"study {self.name!r}: train.sentence_markers is left to the data's labels and not yet "
                             "decided: take the fingerprint of study.with_label_decisions(label_map)")
        unused = ("seed", "num_threads")  # the seed is the record's own; threads change no number
        if get_variant(variant).head == "marker":  # fine-tuning reads no MLM head: adaptation is not its
            unused += tuple(name for name in train if name.startswith("mlm_adapt")) + ("fresh_head_init", "sentence_markers", "label_init", "template")
        if not k:  # the full training set: no K-shot set is drawn
            unused += ("kshot_sampler",)
        for name in unused:
            train.pop(name, None)
        for name, neutral in ADDED_TRAIN_FIELDS.items():  # at their neutral value: as before they existed
            if train.get(name, neutral) == neutral:
                train.pop(name, None)
        space = asdict(self.search_space(variant))
        for name in ("lr_from", "virtual_lr"):  # added later: at their neutral value earlier records stay valid
            if space[name] is None:
                del space[name]
        # data_dir as written: a relative one resolves to another path in another clone.
        data = vars(self.data_config()) | {"data_dir": self.data_dir, "kshot_dir": self.kshot_dir}
        if is_bundled(self.data_dir):  # the SemEval default's very files, wherever they were unpacked
            data["data_dir"] = None
        if data["kshot_dir"] is None:  # added later: without one, earlier records stay valid
            del data["kshot_dir"]
        parts = {"train": train, "data": data, "space": space,
                 # Not num_samples: more search trials extend a search, its finished ones still count.
                 "search": [self.search.enabled, self.search.search_seed, self.search.asha, self.search.grace_period]}
        setup = self.numbers_setup()
        if setup:  # added later: at the neutral setup it leaves earlier records valid
            parts["setup"] = setup
        return hashlib.sha1(json.dumps(_plain(parts), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def numbers_setup(self) -> dict[str, object]:
        """How this study's trials will run, where that changes their numbers, as far as the
        driver can tell; only what differs from the neutral setup every record had before the
        fingerprint held it: one worker, on CPU, bf16 autocast active exactly when asked for.

        - workers: `train.batch_size` is the global batch, so N workers give one worker's
          numbers to float summation order only (tests/test_worker_count.py), and a flipped
          argmax can carry such a difference on. 0 (local mode) and 1 are one worker alike.
        - use_gpu: other kernels, other numbers (and GPU runs are not bit-reproducible).
        - bf16_active: `train.bf16` only asks; a device that does not compute bf16 natively
          runs fp32 (cloce.runtime.bf16_active), other numbers. Known for sure only where the
          trial runs, which records it (MLflow tags `bf16_active`, `world_size`; the ledger
          record's fields). The fingerprint takes the driver's judgement of its own device
          kind: in a local study the trials' very machine; a CPU cluster's nodes are taken to
          be alike. A driver without a GPU cannot judge a GPU study's: it takes bf16 as asked
          (every GPU since Ampere computes bf16).
        Not threads (cpus_per_worker), GPU shares or retries: they change no number.
        """
        import torch

        from cloce.runtime import bf16_native

        asked = bool(self.train.get("bf16", TrainConfig.bf16))
        device_type = "cuda" if self.resources.use_gpu else "cpu"
        judged = device_type == "cpu" or torch.cuda.is_available()
        setup = {"workers": max(1, self.resources.workers_per_trial), "use_gpu": self.resources.use_gpu,
                 "bf16_active": asked and (bf16_native(device_type) if judged else True)}
        neutral = {"workers": 1, "use_gpu": False, "bf16_active": asked}
        return {name: value for name, value in setup.items() if value != neutral[name]}

    def data_config(self) -> DataConfig:
        return DataConfig(data_dir=_from_repo_root(self.data_dir), format=self.data_format,
                          kshot_dir=_from_repo_root(self.kshot_dir))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spaces"] = {v: asdict(self.search_space(v)) for v in dict.fromkeys([*self.variants, *self.spaces])}
        return _plain(out)


# TrainConfig fields added after results files were recorded, with the value that behaves as
# before they existed: left out of a cell's fingerprint at that value, so those records still count.
ADDED_TRAIN_FIELDS = {"sentence_markers": False, "label_init": "name", "template": "relation_of", "mlm_adapt_head_only": False,
                      "kshot_sampler": "per_label", "ptr_rules_file": None, "ke_weight": 0.001, "virtual_lr": None,
                      "compile": False}

DEFAULT_SPACES: dict[str, SearchSpace] = {
    name: SearchSpace(lr=(1e-5, 5e-4), cl_lr=(1e-6, 1e-4), margin=(0.1, 1.0))
    if name in CONTRASTIVE_VARIANTS else SearchSpace(lr=(1e-5, 5e-4))
    for name in VARIANTS
}


def _from_repo_root(path: str | None) -> str | None:
    """A relative path of an experiment file is the checkout's (e.g. "../shared/datasets/scierc");
    an installed copy has no checkout: it is the current directory's."""
    if path and not Path(path).expanduser().is_absolute():
        return os.path.normpath((checkout_root() or Path.cwd()) / path)  # normpath: "<repo>/../shared" -> "<parent>/shared"
    return path


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
