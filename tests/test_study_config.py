"""Study configs: every experiment file loads; overrides apply; each error names file, key, allowed values."""
from __future__ import annotations

import pytest

from cloce.config import TrainConfig
from cloce.data.types import LabelMap
from cloce.variants import VARIANTS
from study.configuration.study_config import DEFAULT_SPACES, SearchSpace, StudyConfig, StudyConfigError
from study.configuration.study_file import EXPERIMENTS_DIR, available_experiments, experiment_path, load_study_config, parse_override

MINIMAL = """
[study]
name = "tiny"
variants = ["prompt", "cloce_s"]
ks = [8]
seeds = [1]

[train]
epochs = 3

[search]
num_samples = 2
search_seed = 1
"""


def decided(study):
    """As the driver takes a SemEval study's fingerprints: train.sentence_markers decided by its labels."""
    from cloce.data.types import LabelMap

    return study.with_label_decisions(LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"]))


def write(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def problems_of(path, overrides=None) -> str:
    with pytest.raises(StudyConfigError) as caught:
        load_study_config(path, overrides)
    message = str(caught.value)
    assert str(path) in message
    return message


EXPERIMENT_FILES = sorted(EXPERIMENTS_DIR.glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda path: path.stem)
def test_every_experiment_file_loads(path):
    config = load_study_config(path)
    assert isinstance(config, StudyConfig) and config.name == path.stem
    for variant in config.variants:  # every cell makes a valid trial with its no-search values
        for k in config.ks:
            trial = config.train_config(variant, k, config.seeds[0], **config.default_hyperparams(variant))
            assert isinstance(trial, TrainConfig) and trial.variant == variant and trial.k == (k or None)


def test_the_experiment_files_tested_are_the_ones_a_user_can_name():
    assert [path.stem for path in EXPERIMENT_FILES] == available_experiments()
    assert {"quick", "semeval_full", "semeval_results", "tacred_full", "ki_ablation"} <= set(available_experiments())


def test_quick_is_the_cheap_semeval_default():
    config = load_study_config("quick")
    assert config.data_dir is None and config.model is None and not config.requires_data_dir
    assert config.variants == tuple(VARIANTS) and config.ks == (8, 16) and config.seeds == (1, 2, 3)
    assert config.train["kshot_val"] is True and config.search.num_samples == 2
    assert config.kshot_sets() == "knowprompt"  # the default: it follows TrainConfig's


def test_tacred_files_require_a_data_dir_and_accept_one_from_overrides():
    config = load_study_config("tacred_fewshot")
    assert config.requires_data_dir and config.data_dir is None and config.data_format == "tacred"
    assert config.model == "roberta-large" and config.resources.use_gpu and config.resources.workers_per_trial == 2
    assert load_study_config("tacred_fewshot", {"study.data_dir": "/data/tacred"}).data_dir == "/data/tacred"


def test_tacred_full_uses_the_paper_fixed_hyperparameters():
    config = load_study_config("tacred_full")
    assert not config.search.enabled and config.ks == (0,)
    assert config.default_hyperparams("cloce_d") == {"lr": 3e-5, "cl_lr": 1e-6, "margin": 0.5}
    trial = config.train_config("cloce_d", 0, 1, **config.default_hyperparams("cloce_d"))
    assert trial.k is None and trial.batch_size == 16 and trial.epochs == 5 and trial.model == "roberta-large"


def test_overrides_apply_before_validation(tmp_path):
    path = write(tmp_path, MINIMAL)
    config = load_study_config(path, {"study.ks": [16, 32], "train.epochs": 7, "search.num_samples": 5,
                                      "spaces.cloce_s.margin": [0.2, 0.4]})
    assert config.ks == (16, 32) and config.train["epochs"] == 7 and config.search.num_samples == 5
    assert config.search_space("cloce_s") == SearchSpace(lr=(1e-5, 5e-4), cl_lr=(1e-6, 1e-4), margin=(0.2, 0.4))
    assert "train.epochs" in problems_of(path, {"train.epochs": 0})


def test_parse_override_reads_toml_values_and_bare_strings():
    assert parse_override("study.ks=[8, 16]") == ("study.ks", [8, 16])
    assert parse_override("train.lr = 3e-5") == ("train.lr", 3e-5)
    assert parse_override("study.data_dir=/data/tacred") == ("study.data_dir", "/data/tacred")


def test_unlisted_variants_get_default_spaces_and_to_dict_is_plain(tmp_path):
    config = load_study_config(write(tmp_path, MINIMAL))
    assert config.search_space("prompt") == DEFAULT_SPACES["prompt"] == SearchSpace(lr=(1e-5, 5e-4))
    assert config.search_space("cloce_s").margin == (0.1, 1.0)
    out = config.to_dict()
    assert out["ks"] == [8] and out["spaces"]["cloce_s"]["cl_lr"] == [1e-6, 1e-4] and out["search"]["enabled"]


def test_empty_range_fixes_a_parameter(tmp_path):
    config = load_study_config(write(tmp_path, MINIMAL + "\n[spaces.cloce_s]\nmargin = []\n"))
    assert config.search_space("cloce_s").margin is None
    assert "margin" not in config.default_hyperparams("cloce_s")


def test_a_number_fixes_a_parameter_and_a_cell_with_nothing_to_search_has_no_search(tmp_path):
    text = MINIMAL + "\n[spaces.prompt]\nlr = 1.5e-4\n\n[spaces.cloce_s]\nlr = 2e-4\nmargin = 0.3\n"
    config = load_study_config(write(tmp_path, text))
    assert config.searched("prompt") == {}
    assert config.default_hyperparams("prompt") == {"lr": 1.5e-4}
    assert config.searched("cloce_s") == {"cl_lr": (1e-6, 1e-4)}
    assert config.fixed_hyperparams("cloce_s") == {"lr": 2e-4, "margin": 0.3}
    plain = load_study_config(write(tmp_path, MINIMAL))
    assert plain.searched("cloce_s") == {"lr": (1e-5, 5e-4), "cl_lr": (1e-6, 1e-4), "margin": (0.1, 1.0)}
    assert decided(config).cell_fingerprint("prompt", 8) != decided(plain).cell_fingerprint("prompt", 8)


@pytest.mark.parametrize("extra, expected", [
    ("\n[spaces.prompt]\nlr = 0\n", ["spaces.prompt.lr", "a fixed lr must be > 0"]),
    ("\n[spaces.cloce_s]\nmargin = 3.0\n", ["spaces.cloce_s.margin", "needs 0.0 <= margin <= 2.0"]),
    ("\n[spaces.cloce_s]\nmargin = true\n", ["spaces.cloce_s.margin", "expected a [low, high] list"]),
])
def test_a_bad_fixed_value_is_named(tmp_path, extra, expected):
    message = problems_of(write(tmp_path, MINIMAL + extra))
    for part in expected:
        assert part in message


def test_a_variant_can_take_another_variants_chosen_lr(tmp_path):
    config = load_study_config(write(tmp_path, MINIMAL + '\n[spaces.cloce_s]\nlr = "prompt"\n'))
    assert config.search_space("cloce_s").lr_from == "prompt"
    assert config.to_dict()["spaces"]["cloce_s"]["lr_from"] == "prompt"
    # What the cell's records depend on changes; the source cell's does not.
    plain = load_study_config(write(tmp_path, MINIMAL))
    assert decided(config).cell_fingerprint("cloce_s", 8) != decided(plain).cell_fingerprint("cloce_s", 8)
    assert decided(config).cell_fingerprint("prompt", 8) == decided(plain).cell_fingerprint("prompt", 8)


@pytest.mark.parametrize("extra, expected", [
    ('\n[spaces.cloce_s]\nlr = "bert"\n', ["spaces.cloce_s.lr", "'bert' is not another variant"]),
    ('\n[spaces.cloce_s]\nlr = "prompt_ki"\n', ["spaces.cloce_s.lr", "prompt_ki must be in study.variants before cloce_s"]),
    ('\n[spaces.prompt]\nlr = "cloce_s"\n', ["spaces.prompt.lr", "cloce_s must be in study.variants before prompt"]),
    ("\n[extras]\na = 1\n", ["extras: unknown section", "allowed: study, train, search, resources, spaces"]),
    ("\n[resources]\nworkers = 2\n", ["resources.workers: unknown key", "allowed:", "workers_per_trial"]),
    ("\n[spaces.prompt]\nlr = [5e-4, 1e-5]\n", ["spaces.prompt.lr", "0 < low < high", "[0.0005, 1e-05]"]),
    ("\n[spaces.cloce_d]\nmargin = [-0.5, 1.0]\n", ["spaces.cloce_d.margin", "0.0 <= low < high <= 2.0"]),
    ("\n[spaces.prompt]\ncl_lr = [1e-6, 1e-4]\n", ["spaces.prompt.cl_lr", "only cloce_s, cloce_d", "allowed here: lr"]),
    ("\n[spaces.cloce_x]\nlr = [1e-5, 1e-4]\n", ["spaces.cloce_x", "finetune, ptr, knowprompt, prompt, prompt_ki, cloce_s, cloce_d"]),
])
def test_file_errors_name_file_key_and_allowed_values(tmp_path, extra, expected):
    message = problems_of(write(tmp_path, MINIMAL + extra))
    for part in expected:
        assert part in message


@pytest.mark.parametrize("overrides, expected", [
    ({"study.variants": ["prompt", "bert"]}, ["study.variants", "'bert'", "finetune, ptr, knowprompt, prompt, prompt_ki, cloce_s, cloce_d"]),
    ({"study.ks": [-8]}, ["study.ks", "-8", "integers >= 0"]),
    ({"study.seeds": []}, ["study.seeds", "must not be empty"]),
    ({"search.num_samples": 0}, ["search.num_samples", "must be >= 1, got 0"]),
    ({"search.max_concurrent_trials": -1}, ["search.max_concurrent_trials", "must be >= 0"]),
    ({"resources.max_running_trials": -2}, ["resources.max_running_trials", "must be >= 0"]),
    ({"resources.workers_per_trial": -1}, ["resources.workers_per_trial", "must be >= 0"]),
    ({"search.num_samples": "two"}, ["search.num_samples", "expected an integer", "'two'"]),
    ({"study.data_format": "json"}, ["study.data_format", "one of 'auto', 'tacred', 'opennre'"]),
    ({"train.learning_rate": 1e-4}, ["train.learning_rate: unknown key", "allowed:", "cl_lr", "epochs"]),
    ({"train.variant": "prompt"}, ["train.variant", "use study.variants"]),
    ({"train.lr": -1}, ["train.lr: must be > 0, got -1"]),
    ({"train.trainable_margin": True}, ["spaces.cloce_s.margin", "inside (margin_low, margin_high) = (0.05, 1.0)"]),
    ({"train.epochs": 2, "search.asha": True, "search.grace_period": 3}, ["search.grace_period", "<= train.epochs (2)"]),
])
def test_override_errors_name_file_key_and_allowed_values(tmp_path, overrides, expected):
    message = problems_of(write(tmp_path, MINIMAL), overrides)
    for part in expected:
        assert part in message


def test_all_problems_are_reported_at_once(tmp_path):
    with pytest.raises(StudyConfigError) as caught:
        load_study_config(write(tmp_path, MINIMAL), {"search.num_samples": 0, "train.lr": -1, "study.ks": [-1]})
    assert len(caught.value.problems) == 3


def test_missing_required_keys_are_named(tmp_path):
    message = problems_of(write(tmp_path, "[study]\nname = 'x'\n"))
    for key in ("study.variants: required", "study.ks: required", "study.seeds: required", "search.num_samples: required"):
        assert key in message


def test_malformed_toml_names_the_line(tmp_path):
    path = write(tmp_path, '[study]\nname = "x"\nks = 8 8\n')
    message = problems_of(path)
    assert "line 3" in message and "invalid TOML" in message


def test_experiment_path_resolves_names_and_paths(tmp_path):
    assert experiment_path("quick") == EXPERIMENTS_DIR / "quick.toml"
    assert experiment_path("quick.toml") == EXPERIMENTS_DIR / "quick.toml"
    own = write(tmp_path, MINIMAL)
    assert experiment_path(own) == own and experiment_path(str(own)) == own


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(StudyConfigError) as caught:
        experiment_path("no_such_study")
    message = str(caught.value)
    assert "no_such_study" in message and "quick" in message and "tacred_full" in message


def test_the_driver_decides_sentence_markers_by_the_labels_and_recorded_results_keep_their_fingerprint():
    """Unset, `train.sentence_markers` is decided by the data's labels before any fingerprint
    is taken: on for SemEval's directed labels (a new fingerprint: other numbers), off for
    undirected ones, where records made before the option existed still count; a study that
    pins it (the recorded SemEval ones) keeps its value whatever the labels."""
    import json
    from pathlib import Path

    from cloce.data.types import LabelMap

    directed = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"])
    undirected = LabelMap.from_labels(["no_relation", "per:title"])
    quick = load_study_config("quick")
    assert "sentence_markers" not in quick.train
    marked = quick.with_label_decisions(directed)
    assert marked.train_config("prompt_ki", 8, 1).sentence_markers is True
    pinned_off = load_study_config("quick", {"train.sentence_markers": False})
    assert marked.cell_fingerprint("prompt_ki", 8) != pinned_off.cell_fingerprint("prompt_ki", 8)
    assert quick.with_label_decisions(undirected).cell_fingerprint("prompt_ki", 8) == \
        pinned_off.cell_fingerprint("prompt_ki", 8)
    assert marked.cell_fingerprint("finetune", 8) == pinned_off.cell_fingerprint("finetune", 8)  # reads no prompt
    assert quick.cell_fingerprint("finetune", 8) == pinned_off.cell_fingerprint("finetune", 8)
    with pytest.raises(ValueError, match="not yet decided"):  # would match no record under either value
        quick.cell_fingerprint("prompt_ki", 8)

    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    for name, labels in (("semeval_protocol", directed), ("scierc_protocol", undirected)):
        study = load_study_config(name).with_label_decisions(labels)
        recorded = {(r["variant"], r["k"]): r["fingerprint"] for r in map(json.loads, (results / f"{name}.jsonl").open())}
        assert study.train_config("prompt_ki", 16, 1).sentence_markers is False
        assert {cell: study.cell_fingerprint(*cell) for cell in recorded} == recorded


def test_only_knowprompt_searches_its_virtual_words_lr_and_an_unsearched_one_keeps_old_fingerprints(tmp_path):
    path = tmp_path / "study.toml"
    base = '[study]\nname = "s"\nvariants = ["knowprompt", "ptr"]\nks = [8]\nseeds = [1]\n[search]\nnum_samples = 2\n'
    path.write_text(base + "[spaces.knowprompt]\nvirtual_lr = [1e-5, 1e-3]\n")
    study = load_study_config(path).with_label_decisions(LabelMap.from_labels(["Other", "A-B(e1,e2)"]))
    assert study.searched("knowprompt") == {"lr": (1e-5, 5e-4), "virtual_lr": (1e-5, 1e-3)}
    assert study.searched("ptr") == {"lr": (1e-5, 5e-4)}
    path.write_text(base + "[spaces.ptr]\nvirtual_lr = [1e-5, 1e-3]\n")
    with pytest.raises(StudyConfigError, match="spaces.ptr.virtual_lr: only knowprompt has virtual words"):
        load_study_config(path)
