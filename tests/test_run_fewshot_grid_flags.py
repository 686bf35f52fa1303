"""study/run_fewshot_grid.py's flags, in-process: each lands on its StudyConfig field (or on
the argument the driver reads), and a flag left out keeps the experiment's value."""
from __future__ import annotations

import pytest

from study.configuration.study_config import StudyConfigError
from study.configuration.study_file import load_study_config
from study.cli import build_parser, main, overrides_from


def study_from(*argv: str):
    args = build_parser().parse_args(list(argv))
    return args, load_study_config(args.experiment, overrides_from(args))


def test_each_config_flag_lands_on_its_field(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.chdir(tmp_path)  # a relative --data-dir is made absolute: trials run elsewhere
    args, study = study_from(
        "--experiment", "semeval_fewshot", "--data-dir", "data", "--model", "org/some-hub-model",
        "--variants", "prompt_ki", "cloce_d", "--ks", "4", "0", "--seeds", "7", "9", "--num-samples", "5",
        "--epochs", "6", "--workers-per-trial", "2", "--use-gpu", "--max-concurrent-trials", "1",
        "--max-running-trials", "6",
    )
    assert study.name == "semeval_fewshot"
    assert study.data_dir == str(data.resolve())
    assert study.model == "org/some-hub-model"  # not a local folder: a hub id, unchanged
    assert study.variants == ("prompt_ki", "cloce_d")
    assert (study.ks, study.seeds) == ((4, 0), (7, 9))
    assert study.search.num_samples == 5 and study.search.max_concurrent_trials == 1
    assert study.train["epochs"] == 6
    assert study.train_config("cloce_d", 4, 7).epochs == 6  # and every trial trains that long
    assert (study.resources.workers_per_trial, study.resources.use_gpu, study.resources.max_running_trials) == (2, True, 6)


def test_flags_left_out_keep_the_experiments_values(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    reference = load_study_config("quick")
    args, study = study_from()
    assert study == reference
    assert (args.study_dir, args.resume, args.results_file, args.storage_path, args.num_cpus) == (None, False, None, None, None)
    assert (args.address, args.tracking_uri) == (None, None)
    assert study_from("--no-use-gpu")[1].resources.use_gpu is False


def test_a_local_model_folder_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert study_from("--model", "my-model")[1].model == str((tmp_path / "my-model").resolve())


def test_set_reaches_any_section_and_wins_over_a_flag():
    _, study = study_from(
        "--epochs", "3", "--set", "train.epochs=5", "--set", "train.batch_size=4", "--set", "search.asha=true",
        "--set", "resources.cpus_per_worker=2", "--set", "spaces.cloce_s.lr=prompt_ki",
        "--set", "spaces.prompt.lr=[1e-4, 1e-3]",
    )
    assert (study.train["epochs"], study.train["batch_size"]) == (5, 4)
    assert study.search.asha is True and study.resources.cpus_per_worker == 2
    assert study.search_space("cloce_s").lr_from == "prompt_ki"
    assert study.search_space("prompt").lr == (1e-4, 1e-3)


def test_run_arguments_reach_the_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    args = build_parser().parse_args([
        "--study-dir", str(tmp_path / "s"), "--resume", "--results-file", "r.jsonl", "--tracking-uri", "http://t:5000",
        "--storage-path", "s3://bucket/x", "--num-cpus", "3",
    ])
    assert (args.study_dir, args.resume, args.results_file) == (str(tmp_path / "s"), True, "r.jsonl")
    assert (args.tracking_uri, args.storage_path, args.num_cpus) == ("http://t:5000", "s3://bucket/x", 3)
    assert args.address == "ray://head:10001"  # $RAY_ADDRESS: what a `ray job submit` job is given
    assert build_parser().parse_args(["--address", "auto"]).address == "auto"


def test_a_bad_flag_value_names_its_field(capsys):
    with pytest.raises(StudyConfigError, match="study.variants"):
        study_from("--variants", "no_such_variant")
    assert main(["--epochs", "0"]) == 2  # refused before Ray or MLflow start
    assert "train.epochs" in capsys.readouterr().err
