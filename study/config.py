"""Typed study configuration: one TOML file under experiments/ plus CLI overrides, validated once.

A study is a grid of (variant, K) cells. Stage 1 searches each cell's hyper-parameters with
Optuna on the K-shot sample of `search.search_seed` (choosing on val, never on test); stage 2
trains every seed of `study.seeds` with the chosen values.

    [study]             name, description, data_dir, data_format, model, variants, ks, seeds,
                        requires_data_dir
    [train]             fixed TrainConfig fields of every trial (variant, k, seed and model
                        come from [study])
    [search]            num_samples, search_seed, max_concurrent_trials (per cell; 0: all), asha,
                        grace_period, enabled
    [resources]         workers_per_trial, use_gpu, cpus_per_worker, gpus_per_worker, max_failures,
                        max_running_trials (the whole study; 0: what the cluster holds), cells_in_parallel,
                        checkpoint_every_s
    [spaces.<variant>]  lr, cl_lr = [low, high] (log-uniform), margin = [low, high] (uniform);
                        a key left out keeps DEFAULT_SPACES' range, `[]` fixes it (not searched);
                        lr = "<variant>" takes the lr that variant's search chose at the same K
                        (listed earlier in study.variants): cloce_s/cloce_d on prompt_ki's lr
                        spend their search on what the contrastive step adds

A searched parameter overrides the same [train] key. With `search.enabled = false` it takes
its [train] value when there is one, else the midpoint of its range (`default_hyperparams`).
`data_dir = ""` (or left out) means the SemEval default unless `requires_data_dir = true`:
then the runner must be given --data-dir (the file loads without it).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints

from cloce.config import ConfigError, DataConfig, TrainConfig
from cloce.variants import VARIANTS, get_variant

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
CONTRASTIVE_VARIANTS = tuple(name for name, v in VARIANTS.items() if v.contrastive != "none")
MARGIN_BOUNDS = (0.0, 2.0)
LOG_UNIFORM = ("lr", "cl_lr")  # searched on a log scale; margin is uniform
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
    lr: tuple[float, float]  # classification lr, log-uniform
    cl_lr: tuple[float, float] | None = None  # contrastive lr, log-uniform (cloce_s / cloce_d)
    margin: tuple[float, float] | None = None  # uniform (cloce_s / cloce_d)
    # Not searched: the lr chosen for this variant's cell at the same K (study.stages.run_search).
    lr_from: str | None = None


@dataclass(frozen=True)
class SearchConfig:
    num_samples: int  # Optuna trials per (variant, K) cell
    search_seed: int  # K-shot sample seed of stage 1, and the Optuna sampler seed
    # Trials of one cell at a time, each stage; 0: all of them (every cell runs at once anyway:
    # study/pool.py). 1 makes TPE past its random start-up independent of completion order.
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
    # would leave more than this many seconds of training unsaved (study/checkpointing.py): a
    # killed trial loses at most this much. 0: every epoch. Changes no number.
    checkpoint_every_s: float = 0.0


@dataclass(frozen=True)
class StudyConfig:
    name: str
    description: str
    data_dir: str | None  # None: SemEval default
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

    def search_space(self, variant: str) -> SearchSpace:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        return self.spaces.get(variant, DEFAULT_SPACES[variant])

    def default_hyperparams(self, variant: str) -> dict[str, float]:
        """Values of the searched parameters when there is no search: [train]'s, else the midpoint."""
        values = {}
        for name, span in asdict(self.search_space(variant)).items():
            if span is None or name == "lr_from":
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
        unused = ("seed", "num_threads")  # the seed is the record's own; threads change no number
        if get_variant(variant).head == "marker":  # fine-tuning reads no MLM head: adaptation is not its
            unused += tuple(name for name in train if name.startswith("mlm_adapt")) + ("fresh_head_init", "sentence_markers")
        for name in unused:
            train.pop(name, None)
        for name, neutral in ADDED_TRAIN_FIELDS.items():  # at their neutral value: as before they existed
            if train.get(name, neutral) == neutral:
                train.pop(name, None)
        space = asdict(self.search_space(variant))
        if space["lr_from"] is None:  # added later: at its neutral value it leaves earlier records valid
            del space["lr_from"]
        parts = {"train": train, "data": vars(self.data_config()), "space": space,
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
        return DataConfig(data_dir=self.data_dir, format=self.data_format)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spaces"] = {v: asdict(self.search_space(v)) for v in dict.fromkeys([*self.variants, *self.spaces])}
        return _plain(out)


# TrainConfig fields added after results files were recorded, with the value that behaves as
# before they existed: left out of a cell's fingerprint at that value, so those records still count.
ADDED_TRAIN_FIELDS = {"sentence_markers": False}

DEFAULT_SPACES: dict[str, SearchSpace] = {
    name: SearchSpace(lr=(1e-5, 5e-4), cl_lr=(1e-6, 1e-4), margin=(0.1, 1.0))
    if name in CONTRASTIVE_VARIANTS else SearchSpace(lr=(1e-5, 5e-4))
    for name in VARIANTS
}

_REQUIRED = object()
_STUDY_KEYS = {
    "name": (str, _REQUIRED), "description": (str, ""), "data_dir": (str, ""),
    "data_format": (Literal["auto", "tacred", "opennre"], "auto"), "model": (str, ""),
    "variants": (tuple[str, ...], _REQUIRED), "ks": (tuple[int, ...], _REQUIRED),
    "seeds": (tuple[int, ...], _REQUIRED), "requires_data_dir": (bool, False),
}
_SEARCH_KEYS = {
    "num_samples": (int, _REQUIRED), "search_seed": (int, 1), "max_concurrent_trials": (int, 0),
    "asha": (bool, False), "grace_period": (int, 1), "enabled": (bool, True),
}
_RESOURCES_KEYS = {name: (hint, getattr(ResourcesConfig, name)) for name, hint in get_type_hints(ResourcesConfig).items()}
_TRAIN_HINTS = {name: hint for name, hint in get_type_hints(TrainConfig).items() if name not in SET_BY_STUDY}
_SECTIONS = ("study", "train", "search", "resources", "spaces")


def experiment_path(name_or_path: str | Path) -> Path:
    """`quick` -> experiments/quick.toml; an existing file is used as is."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    if "/" not in name and "\\" not in name:
        candidate = EXPERIMENTS_DIR / (name if name.endswith(".toml") else f"{name}.toml")
        if candidate.is_file():
            return candidate
    raise StudyConfigError(name, [f"not a file nor an experiment name; available experiments: "
                                  f"{', '.join(available_experiments())} (in {EXPERIMENTS_DIR})"])


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


def parse_override(text: str) -> tuple[str, object]:
    """`train.epochs=3` -> ("train.epochs", 3); the value is read as TOML, else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise StudyConfigError("<override>", [f"{text!r}: expected section.key=value, e.g. train.epochs=3"])
    try:
        return key.strip(), tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value.strip()


def load_study_config(path: str | Path, overrides: dict | None = None) -> StudyConfig:
    """Read, override (dotted keys, e.g. {"search.num_samples": 2}), validate: every problem at once."""
    path = experiment_path(path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyConfigError(path, [_toml_problem(error, text)]) from None
    problems: list[str] = []
    _apply_overrides(raw, overrides or {}, problems)
    config = _build(raw, problems)
    if problems:
        note = f" (with overrides {', '.join(overrides)})" if overrides else ""
        raise StudyConfigError(path, problems, note)
    return config


def _toml_problem(error: tomllib.TOMLDecodeError, text: str) -> str:
    # Python 3.11's error carries the position only in its message: "... (at line 3, column 7)".
    found = re.search(r"line (\d+), column (\d+)", str(error))
    line = getattr(error, "lineno", None) or (int(found.group(1)) if found else None)
    column = getattr(error, "colno", None) or (int(found.group(2)) if found else None)
    if line is None:
        return f"invalid TOML: {error}"
    source = text.splitlines()[line - 1].strip() if 0 < line <= len(text.splitlines()) else ""
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
    return f"line {line}, column {column}: invalid TOML: {message}: {source!r}"


def _apply_overrides(raw: dict, overrides: dict, problems: list[str]) -> None:
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) != (3 if parts[0] == "spaces" else 2) or not all(parts):
            problems.append(f"{key}: an override key is section.key or spaces.<variant>.key, e.g. train.epochs")
            continue
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"{key}: {part} is not a table")
                break
        else:
            node[parts[-1]] = value


def _build(raw: dict, problems: list[str]) -> StudyConfig | None:
    for section in raw:
        if section not in _SECTIONS:
            problems.append(f"{section}: unknown section [{section}]; allowed: {', '.join(_SECTIONS)}")
    if isinstance(raw.get("search"), dict) and raw["search"].get("enabled") is False:
        raw["search"].setdefault("num_samples", 1)  # no stage 1: nothing to count
    study = _read_table(raw, "study", _STUDY_KEYS, problems)
    search = _read_table(raw, "search", _SEARCH_KEYS, problems)
    resources = _read_table(raw, "resources", _RESOURCES_KEYS, problems)
    train = _read_table(raw, "train", {k: (h, None) for k, h in _TRAIN_HINTS.items()}, problems, set_by_study=True)
    train = {k: v for k, v in train.items() if v is not None}
    spaces = _read_spaces(raw, problems)
    checks = [
        _check_list(study, "study.variants", "variants", lambda v: v in VARIANTS, f"one of {', '.join(VARIANTS)}"),
        _check_list(study, "study.ks", "ks", lambda k: k >= 0, "integers >= 0 (0: the full training set)"),
        _check_list(study, "study.seeds", "seeds", lambda s: s >= 0, "integers >= 0"),
        _at_least(search, "search", {"num_samples": 1, "max_concurrent_trials": 0, "grace_period": 1, "search_seed": 0}),
        _at_least(resources, "resources", {"workers_per_trial": 0, "cpus_per_worker": 1, "max_failures": -1,
                                           "max_running_trials": 0}),
    ]
    problems.extend(p for group in checks for p in group)
    if resources.get("checkpoint_every_s", 0) < 0:
        problems.append(f"resources.checkpoint_every_s: must be >= 0 (0: every epoch), got {resources['checkpoint_every_s']}")
    if "gpus_per_worker" in resources and not resources["gpus_per_worker"] > 0:
        problems.append(f"resources.gpus_per_worker: must be > 0, got {resources['gpus_per_worker']}")
    trial = _train_config(train, problems)  # the well-typed keys: their problems are reported too
    epochs = train.get("epochs", TrainConfig.epochs)
    if search.get("enabled") and search.get("asha") and search.get("grace_period", 0) > epochs:
        problems.append(f"search.grace_period: ASHA needs grace_period <= train.epochs ({epochs}), got {search['grace_period']}")
    if trial is not None and trial.trainable_margin:
        used = {v: DEFAULT_SPACES[v] for v in study.get("variants", ()) if v in VARIANTS} | spaces
        for variant, space in used.items():
            if space.margin and not trial.margin_low < space.margin[0] < space.margin[1] < trial.margin_high:
                problems.append(f"spaces.{variant}.margin: with train.trainable_margin the range must lie inside "
                                f"(margin_low, margin_high) = ({trial.margin_low}, {trial.margin_high}), got {list(space.margin)}")
    if problems:
        return None
    config = StudyConfig(
        name=study["name"], description=study["description"], data_dir=study["data_dir"] or None,
        data_format=study["data_format"], model=study["model"] or None, variants=study["variants"],
        ks=study["ks"], seeds=study["seeds"], train=train, search=SearchConfig(**search), spaces=spaces,
        resources=ResourcesConfig(**resources), requires_data_dir=study["requires_data_dir"],
    )
    for variant in config.variants:
        source = config.search_space(variant).lr_from
        if source and (source not in config.variants or config.variants.index(source) > config.variants.index(variant)):
            problems.append(f"spaces.{variant}.lr: takes {source}'s chosen lr, so {source} must be in study.variants "
                            f"before {variant}; variants: {config.variants}")
    for variant in config.variants:  # the fixed values of a search-free study must make a valid trial too
        try:
            config.train_config(variant, config.ks[0], config.seeds[0], **config.default_hyperparams(variant))
        except ConfigError as error:
            problems.extend(f"spaces.{variant}: its fixed values make an invalid trial: {p}" for p in str(error).split("; "))
    return config


def _read_table(raw: dict, section: str, schema: dict, problems: list[str], set_by_study: bool = False) -> dict:
    table = raw.get(section, {})
    if not isinstance(table, dict):
        problems.append(f"{section}: expected a [{section}] table, got {table!r}")
        table = {}
    out = {}
    for key, value in table.items():
        if set_by_study and key in SET_BY_STUDY:
            problems.append(f"{section}.{key}: set per trial by the study; use {SET_BY_STUDY[key]} instead")
        elif key not in schema:
            problems.append(f"{section}.{key}: unknown key; allowed: {', '.join(sorted(schema))}")
        else:
            out[key] = _typed(f"{section}.{key}", value, schema[key][0], problems)
    for key, (_, default) in schema.items():
        if key not in table:
            if default is _REQUIRED:
                problems.append(f"{section}.{key}: required ({_describe(schema[key][0])})")
            else:
                out[key] = default
    return {k: v for k, v in out.items() if v is not _BAD}


def _read_spaces(raw: dict, problems: list[str]) -> dict[str, SearchSpace]:
    tables = raw.get("spaces", {})
    if not isinstance(tables, dict):
        problems.append(f"spaces: expected [spaces.<variant>] tables; variants: {', '.join(VARIANTS)}")
        return {}
    spaces = {}
    for variant, table in tables.items():
        if variant not in VARIANTS or not isinstance(table, dict):
            problems.append(f"spaces.{variant}: not a variant's table; allowed: [spaces.<variant>] with variant one of {', '.join(VARIANTS)}")
            continue
        values = asdict(DEFAULT_SPACES[variant])
        count = len(problems)
        for name, span in table.items():
            key = f"spaces.{variant}.{name}"
            if name not in values:
                problems.append(f"{key}: unknown key; allowed: {', '.join(values)}")
            elif name != "lr" and variant not in CONTRASTIVE_VARIANTS:
                problems.append(f"{key}: only {', '.join(CONTRASTIVE_VARIANTS)} have a contrastive step; allowed here: lr")
            elif span == [] and name != "lr":
                values[name] = None  # fixed: not searched
            elif name == "lr" and isinstance(span, str):
                if span not in VARIANTS or span == variant:
                    problems.append(f"{key}: {span!r} is not another variant; a variant name (its chosen lr) "
                                    f"or a [low, high] range")
                values["lr_from"] = span
            else:
                values[name] = _typed(key, span, tuple[float, float], problems)
                if values[name] is not _BAD:
                    _check_range(key, name, values[name], problems)
        if len(problems) == count:
            spaces[variant] = SearchSpace(**values)
    return spaces


def _check_range(key: str, name: str, span: tuple[float, float], problems: list[str]) -> None:
    low, high = span
    if name in LOG_UNIFORM and not 0 < low < high:
        problems.append(f"{key}: a log-uniform range needs 0 < low < high, got {list(span)}")
    elif name == "margin" and not MARGIN_BOUNDS[0] <= low < high <= MARGIN_BOUNDS[1]:
        problems.append(f"{key}: needs {MARGIN_BOUNDS[0]} <= low < high <= {MARGIN_BOUNDS[1]}, got {list(span)}")


def _check_list(table: dict, key: str, name: str, ok, allowed: str) -> list[str]:
    if name not in table:
        return []
    values = table[name]
    if not values:
        return [f"{key}: must not be empty; allowed: {allowed}"]
    problems = [f"{key}: {v!r} is not allowed; allowed: {allowed}" for v in values if not ok(v)]
    duplicates = sorted({v for v in values if values.count(v) > 1}, key=str)
    return problems + ([f"{key}: duplicates {duplicates}"] if duplicates else [])


def _at_least(table: dict, section: str, minimums: dict[str, int]) -> list[str]:
    return [f"{section}.{name}: must be >= {low}, got {table[name]}"
            for name, low in minimums.items() if name in table and table[name] < low]


def _train_config(train: dict, problems: list[str]) -> TrainConfig | None:
    try:
        return TrainConfig(**train)
    except ConfigError as error:  # its messages are "field: what is wrong; field: ..."
        problems.extend(f"train.{p}" for p in str(error).split("; "))
        return None


_BAD = object()
_NOUNS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings")}


def _typed(key: str, value, hint, problems: list[str]):
    out = _coerce(value, hint)
    if out is _BAD:
        problems.append(f"{key}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")
    return out


def _coerce(value, hint):
    """value as `hint` (TOML ints accepted as floats, lists as tuples), or _BAD."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is type(None):
        return None if value is None else _BAD
    if origin in (Union, types.UnionType):
        return next((out for arg in args if (out := _coerce(value, arg)) is not _BAD), _BAD)
    if origin is Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else _BAD
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _BAD
        hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        items = [_coerce(v, h) for v, h in zip(value, hints)] if len(hints) == len(value) else [_BAD]
        return _BAD if _BAD in items else tuple(items)
    if isinstance(value, bool) and hint is not bool:
        return _BAD
    if hint is float and isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else _BAD
    return value if isinstance(value, hint) else _BAD


def _describe(hint) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple and args[-1] is Ellipsis:
        return f"a list of {_NOUNS[args[0]][1]}"
    if origin is tuple:
        return f"a [low, high] list of {len(args)} numbers" if len(args) == 2 else f"a list of {len(args)} values"
    return _NOUNS[hint][0]


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
