"""Bad input stops a study before Ray starts, with an error that says what to fix
(reliability cases 1-6 and 12 at the level users meet them: the study runner)."""
from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest

from study.driver import study_run as driver
from study.cli import main

REAL_START_RAY = driver.start_ray  # the autouse fixture below replaces it

GOOD = {"token": ["the", "fire", "caused", "smoke"], "h": {"name": "fire", "pos": [1, 2]},
        "t": {"name": "smoke", "pos": [3, 4]}, "relation": "Cause-Effect(e1,e2)"}
OTHER = GOOD | {"relation": "Other"}


@pytest.fixture(autouse=True)
def ray_must_not_start(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started although the input was bad")

    monkeypatch.setattr(driver, "start_ray", refuse)


def write_data(directory, train_lines=None, rel2id=True):
    directory.mkdir(parents=True, exist_ok=True)
    lines = train_lines or [json.dumps(GOOD), json.dumps(OTHER)] * 3
    (directory / "train.txt").write_text("\n".join(lines) + "\n")
    for split in ("val", "test"):
        (directory / f"{split}.txt").write_text(json.dumps(GOOD) + "\n" + json.dumps(OTHER) + "\n")
    if rel2id:
        (directory / "rel2id.json").write_text(json.dumps({"Other": 0, "Cause-Effect(e1,e2)": 1}))
    return directory


def run(tmp_path, capsys, *args):
    code = main(["--study-dir", str(tmp_path / "study"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                 "--ks", "2", "--variants", "prompt", *args])
    return code, capsys.readouterr().err


def test_1_malformed_json_line_names_file_and_line(tmp_path, capsys):
    data = write_data(tmp_path / "data", [json.dumps(GOOD), json.dumps(OTHER), '{"token": ["a",'])
    code, err = run(tmp_path, capsys, "--data-dir", str(data))
    assert code == 2 and f"{data / 'train.txt'}, line 3" in err and "malformed JSON" in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing started, nothing trained


def test_2_unknown_label_names_file_line_and_label(tmp_path, capsys):
    data = write_data(tmp_path / "data", [json.dumps(GOOD), json.dumps(GOOD | {"relation": "Made-Up(e1,e2)"})])
    code, err = run(tmp_path, capsys, "--data-dir", str(data))
    assert code == 2 and f"{data / 'train.txt'}, line 2" in err and "Made-Up(e1,e2)" in err


@pytest.mark.parametrize("pos, words", [([3, 9], "tail span [3, 9)"), ([2, 2], "empty")])
def test_3_bad_span_names_file_line_span_and_length(tmp_path, capsys, pos, words):
    bad = GOOD | {"t": {"name": "smoke", "pos": pos}}
    data = write_data(tmp_path / "data", [json.dumps(GOOD), json.dumps(bad)])
    code, err = run(tmp_path, capsys, "--data-dir", str(data))
    assert code == 2 and f"{data / 'train.txt'}, line 2" in err and words in err
    if words.startswith("tail span"):
        assert "4 tokens" in err


def test_4_k_above_a_relations_size_names_relation_and_size(tmp_path, capsys):
    data = write_data(tmp_path / "data")  # 3 instances of each relation
    code, err = run(tmp_path, capsys, "--data-dir", str(data), "--ks", "5")
    assert code == 2 and "K=5 is more than some relations have" in err
    assert "'Cause-Effect(e1,e2)' has 3" in err and "use K <= 3" in err


def test_5_missing_data_directory_says_which_path_and_how_to_pass_one(tmp_path, capsys):
    code, err = run(tmp_path, capsys, "--data-dir", str(tmp_path / "nowhere"))
    assert code == 2 and str(tmp_path / "nowhere") in err and "--data-dir" in err


@pytest.mark.parametrize("override, words", [
    ("train.lr=0", ["train.lr", "must be > 0"]),
    ("train.margin=-0.5", ["train.margin", "must be >= 0"]),
    ("train.learning_rate=1e-4", ["train.learning_rate: unknown key", "allowed:"]),
])
def test_6_bad_config_values_are_named_before_ray_starts(tmp_path, capsys, override, words):
    code, err = run(tmp_path, capsys, "--set", override)
    assert code == 2 and "quick.toml" in err
    assert all(w in err for w in words), err


def test_6_unknown_variant_lists_the_allowed_ones(tmp_path, capsys):
    code, err = run(tmp_path, capsys, "--variants", "cloce_x")
    assert code == 2 and "cloce_x" in err and "finetune, ptr, knowprompt, prompt, prompt_ki, cloce_s, cloce_d" in err


def good_data(tmp_path) -> list[str]:
    """A valid data set of our own: these checks are about the outputs, and must not depend on
    (or be pre-empted by) the shared SemEval copy being there."""
    return ["--data-dir", str(write_data(tmp_path / "data")), "--ks", "2"]


def test_12_unwritable_study_dir_fails_up_front(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, err = main(["--study-dir", str(blocker / "study"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                      *good_data(tmp_path)]), capsys.readouterr().err
    assert code == 2 and str(blocker / "study") in err and "not writable" in err


def test_12_unwritable_tracking_store_fails_up_front(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    uri = f"sqlite:///{blocker}/mlflow.db"
    code, err = main(["--study-dir", str(tmp_path / "study"), "--tracking-uri", uri, *good_data(tmp_path)]), capsys.readouterr().err
    assert code == 2 and "cannot use the MLflow store" in err and uri in err


def test_12_a_full_disk_fails_up_front(tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, (10 << 30) - (5 << 20), 5 << 20))
    code, err = main(["--study-dir", str(tmp_path / "study"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                      *good_data(tmp_path)]), capsys.readouterr().err
    assert code == 2 and "only 5 MiB free" in err and str(tmp_path / "study") in err


def test_12_cli_training_refuses_an_unwritable_output_dir(tmp_path):
    from cloce.config import DataConfig, TrainConfig
    from cloce.run import run_training

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="not writable"):
        run_training(TrainConfig(), DataConfig(data_dir=str(tmp_path / "never_read")), blocker / "out")


def test_secrets_are_never_logged_as_params():
    from study.tracking.runs import safe_params

    params = safe_params({"train": {"lr": 1e-4}, "tracking_uri": "http://user:pw@host", "aws_secret_access_key": "x",
                          "hf_token": "hf_abc", "db_password": "pw", "api_key": "k"})
    assert params == {"train.lr": "0.0001"}


def test_the_local_ray_runtime_keeps_its_dashboard_on_localhost(monkeypatch):
    import os

    import ray

    seen = {}
    monkeypatch.setattr(os, "environ", dict(os.environ))  # start_ray sets Ray's variables here
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    REAL_START_RAY(None, 2, offline=True)
    assert seen["include_dashboard"] is False and seen["dashboard_host"] == "127.0.0.1"


def test_a_trials_params_go_to_mlflow_in_one_batch_without_secrets(tmp_path, monkeypatch):
    """child_run logs every param of a trial in one call (one call a param was one SQLite
    transaction each: ~2.3 s of a trial's tracking for 43 params here), and no secret among them."""
    from mlflow.tracking import MlflowClient

    from study.tracking import runs

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id, parent = runs.start_parent_run(uri, "cloce-test", "study-key", {"a": 1}, {})
    calls = []
    batch = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, run_id, **kw: calls.append(kw) or batch(self, run_id, **kw))
    monkeypatch.setattr(MlflowClient, "log_param", lambda *a, **kw: pytest.fail("one param at a time"))
    params = {f"p{i}": i for i in range(150)} | {"hf_token": "hf_abc"}
    run_id = runs.child_run(uri, experiment_id, parent, "search/finetune/8/1/t1", params, {"variant": "finetune"})
    assert len(calls) == 2 and [len(c["params"]) for c in calls] == [100, 50]  # MLflow's 100 a batch
    logged = MlflowClient(uri).get_run(run_id).data.params
    assert logged == {f"p{i}": str(i) for i in range(150)}
