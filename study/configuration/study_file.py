"""Reading a study file: TOML (+ CLI overrides) into a validated `StudyConfig`, every problem
of the file reported at once, each naming the file and the dotted key (study/configuration/study_config.py has
the sections and what each key means)."""
from __future__ import annotations

import math
import tomllib
from importlib import resources
from dataclasses import asdict
from pathlib import Path
from typing import Literal, get_type_hints

from cloce.config import ConfigError, TrainConfig
from cloce.variants import VARIANTS
from study.configuration.study_config import (
    CONTRASTIVE_VARIANTS, DEFAULT_SPACES, LOG_UNIFORM, MARGIN_BOUNDS, SET_BY_STUDY, VARIANT_PARAMETERS,
    ResourcesConfig,
    SearchConfig, SearchSpace, StudyConfig, StudyConfigError,
)
from study.configuration.toml_values import BAD, REQUIRED, read_table, toml_problem, typed_value

# The study files ship inside the package (package data: study/experiments is the checkout's
# experiments/ folder, its *.toml files in the wheel), so a study runs wherever the package is installed.
EXPERIMENTS_DIR = Path(str(resources.files("study") / "experiments"))

_STUDY_KEYS = {
    "name": (str, REQUIRED), "description": (str, ""), "data_dir": (str, ""),
    "data_format": (Literal["auto", "tacred", "opennre"], "auto"), "model": (str, ""),
    "variants": (tuple[str, ...], REQUIRED), "ks": (tuple[int, ...], REQUIRED),
    "seeds": (tuple[int, ...], REQUIRED), "requires_data_dir": (bool, False), "kshot_dir": (str, ""),
}
# The dataclasses' own defaults.
_SEARCH_KEYS = {name: (hint, getattr(SearchConfig, name, REQUIRED)) for name, hint in get_type_hints(SearchConfig).items()}
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
        raise StudyConfigError(path, [toml_problem(error, text)]) from None
    problems: list[str] = []
    _apply_overrides(raw, overrides or {}, problems)
    config = _build(raw, problems)
    if problems:
        note = f" (with overrides {', '.join(overrides)})" if overrides else ""
        raise StudyConfigError(path, problems, note)
    return config



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
    study = read_table(raw, "study", _STUDY_KEYS, problems)
    search = read_table(raw, "search", _SEARCH_KEYS, problems)
    resources = read_table(raw, "resources", _RESOURCES_KEYS, problems)
    train = read_table(raw, "train", {k: (h, None) for k, h in _TRAIN_HINTS.items()}, problems, set_by_study=SET_BY_STUDY)
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
            span = (space.margin, space.margin) if isinstance(space.margin, float) else space.margin
            if span and not trial.margin_low < span[0] <= span[1] < trial.margin_high:
                problems.append(f"spaces.{variant}.margin: with train.trainable_margin the range must lie inside "
                                f"(margin_low, margin_high) = ({trial.margin_low}, {trial.margin_high}), got {space.margin}")
    if problems:
        return None
    config = StudyConfig(
        name=study["name"], description=study["description"], data_dir=study["data_dir"] or None,
        data_format=study["data_format"], model=study["model"] or None, variants=study["variants"],
        ks=study["ks"], seeds=study["seeds"], train=train, search=SearchConfig(**search), spaces=spaces,
        resources=ResourcesConfig(**resources), requires_data_dir=study["requires_data_dir"],
        kshot_dir=study["kshot_dir"] or None,
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
            elif name in ("cl_lr", "margin") and variant not in CONTRASTIVE_VARIANTS:
                problems.append(f"{key}: only {', '.join(CONTRASTIVE_VARIANTS)} have a contrastive step; allowed here: "
                                f"{', '.join(('lr', *VARIANT_PARAMETERS[variant]))}")
            elif name == "virtual_lr" and name not in VARIANT_PARAMETERS[variant]:
                problems.append(f"{key}: only knowprompt has virtual words of its own lr; allowed here: "
                                f"{', '.join(('lr', *VARIANT_PARAMETERS[variant]))}")
            elif span == [] and name != "lr":
                values[name] = None  # fixed: not searched
            elif name == "lr" and isinstance(span, str):
                if span not in VARIANTS or span == variant:
                    problems.append(f"{key}: {span!r} is not another variant; a variant name (its chosen lr) "
                                    f"or a [low, high] range")
                values["lr_from"] = span
            elif isinstance(span, (int, float)) and not isinstance(span, bool):
                values[name] = float(span)  # fixed: not searched
                _check_fixed(key, name, values[name], problems)
            else:
                values[name] = typed_value(key, span, tuple[float, float], problems)
                if values[name] is not BAD:
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


def _check_fixed(key: str, name: str, value: float, problems: list[str]) -> None:
    if name in LOG_UNIFORM and not 0 < value < math.inf:
        problems.append(f"{key}: a fixed {name} must be > 0, got {value}")
    elif name == "margin" and not MARGIN_BOUNDS[0] <= value <= MARGIN_BOUNDS[1]:
        problems.append(f"{key}: needs {MARGIN_BOUNDS[0]} <= margin <= {MARGIN_BOUNDS[1]}, got {value}")


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
