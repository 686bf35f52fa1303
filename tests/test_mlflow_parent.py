"""The study's parent run in MLflow: each cell's summary as metrics (the few-shot table's
numbers), the few-shot table as an MLflow table artifact, and the link a study ends with."""
from __future__ import annotations

import argparse
import json

import pytest

from study.driver import study_run as driver
from study.tracking import ui_links as mlflow_ui
from study.tracking import runs as tracking
from study.configuration.study_file import load_study_config
from study.reporting.tables import fewshot_numbers, fewshot_table, to_markdown

VARIANTS, KS, SEEDS = ("prompt_ki", "cloce_d"), (2, 4), (1, 2, 3)


def record(variant, k, seed, test, macro=None, status="FINISHED"):
    finished = status == "FINISHED"
    return {"variant": variant, "k": k, "seed": seed, "status": status,
            "val_micro_f1": test + 0.05 if finished else None, "test_micro_f1": test if finished else None,
            "test_macro_f1_semeval": macro if finished else None, "best_epoch": 1 if finished else None,
            "history": [{"epoch": 1, "val_micro_f1": test + 0.05, "train_loss": 1.0, "cl_loss": None}] if finished else [],
            "lr": 1e-4}


def fake_finals() -> list[dict]:
    return [
        # prompt_ki K=2: three seeds (macro too); K=4: two finished, seed 3 failed.
        record("prompt_ki", 2, 1, 0.31, 0.21), record("prompt_ki", 2, 2, 0.35, 0.27), record("prompt_ki", 2, 3, 0.42, 0.30),
        record("prompt_ki", 4, 1, 0.50, 0.40), record("prompt_ki", 4, 2, 0.56, 0.41), record("prompt_ki", 4, 3, 0, status="ERROR"),
        # cloce_d K=2: one seed only (no std); K=4: nothing finished.
        record("cloce_d", 2, 1, 0.44, 0.33), record("cloce_d", 2, 2, 0, status="ERROR"),
        record("cloce_d", 4, 1, 0, status="ERROR"),
        # A seed the study does not ask for: in no summary.
        record("prompt_ki", 2, 9, 0.99, 0.99),
    ]


@pytest.fixture
def study(tiny_semeval_dir):
    return load_study_config("quick", {"study.data_dir": str(tiny_semeval_dir), "study.variants": list(VARIANTS),
                                       "study.ks": list(KS), "study.seeds": list(SEEDS)})


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent_id = tracking.start_parent_run(uri, "cloce-quick", "key", params={}, tags={})
    return uri, experiment_id, parent_id


def test_cell_metrics_are_the_few_shot_tables_numbers(study):
    finals = fake_finals()
    metrics = driver.cell_metrics(finals, study.variants, study.seeds)
    numbers = {(r["variant"], r["k"]): r for r in fewshot_numbers(
        [r for r in finals if r["seed"] in SEEDS], VARIANTS).iter_rows(named=True)}
    assert metrics["prompt_ki_K2_test_micro_f1_mean"] == pytest.approx((0.31 + 0.35 + 0.42) / 3)
    assert metrics["prompt_ki_K2_test_micro_f1_mean"] == numbers["prompt_ki", 2]["test_micro_f1_mean"]
    assert metrics["prompt_ki_K2_test_micro_f1_std"] == numbers["prompt_ki", 2]["test_micro_f1_std"]
    assert metrics["prompt_ki_K2_test_macro_f1_mean"] == pytest.approx((0.21 + 0.27 + 0.30) / 3)
    assert metrics["prompt_ki_K2_seeds"] == 3.0  # seed 9 is not one of the study's
    assert metrics["prompt_ki_K4_test_micro_f1_std"] == pytest.approx(0.06 / 2**0.5)
    assert metrics["prompt_ki_K4_seeds"] == 2.0
    assert metrics["cloce_d_K2_test_micro_f1_mean"] == 0.44 and "cloce_d_K2_test_micro_f1_std" not in metrics
    assert not [name for name in metrics if name.startswith("cloce_d_K4")]
    # ... and what the few-shot table shows, in percent with one decimal.
    shown = fewshot_table(finals, VARIANTS, KS, SEEDS).row(0, named=True)["K=2 micro-F1"]
    assert shown == f"{100 * metrics['prompt_ki_K2_test_micro_f1_mean']:.1f} ± {100 * metrics['prompt_ki_K2_test_micro_f1_std']:.1f}"


def test_parent_run_holds_cell_metrics_and_the_table_artifact(study, store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri, experiment_id, parent_id = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MlflowClient.load_table searches the default store
    finals = fake_finals()
    study_dir = tmp_path / "study"
    driver.attach_results(study, finals, study_dir, uri, parent_id)
    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(parent_id).data

    expected = driver.cell_metrics(finals, study.variants, study.seeds)
    assert expected and {name: logged.metrics[name] for name in expected} == pytest.approx(expected)
    assert logged.metrics["prompt_ki_K2_seed1_test_micro_f1"] == 0.31  # the per-seed ones stay

    artifacts = {a.path for a in client.list_artifacts(parent_id, "results")}
    assert {"results/fewshot_table.json", "results/fewshot_table.md", "results/fewshot_table.csv"} <= artifacts
    assert {"path": "results/fewshot_table.json", "type": "table"} in json.loads(logged.tags["mlflow.loggedArtifacts"])
    # The paired comparisons (cloce_d vs prompt_ki: K=2 seed 1 only) beside it, as a table too.
    assert {"results/comparisons.json", "results/comparisons.md", "results/comparison_seeds.csv"} <= artifacts
    compared = client.load_table(experiment_id, "results/comparisons.json", run_ids=[parent_id])
    assert list(compared["comparison"]) == ["cloce_d − prompt_ki"] and list(compared["seeds"]) == [1]
    want = fewshot_table(finals, VARIANTS, KS, SEEDS, study.kshot_sets())  # with its "K-shot sets" column

    def loaded():
        frame = client.load_table(experiment_id, "results/fewshot_table.json", run_ids=[parent_id])
        return {name: [str(v) for v in frame[name]] for name in frame.columns}

    assert loaded() == want.to_dict(as_series=False)
    # Attached again (a resumed study): replaced, not appended to (log_table alone appends).
    driver.attach_results(study, finals, study_dir, uri, parent_id)
    assert loaded() == want.to_dict(as_series=False)
    assert json.loads(client.get_run(parent_id).data.tags["mlflow.loggedArtifacts"]).count(
        {"path": "results/fewshot_table.json", "type": "table"}) == 1


def test_ui_link_for_a_local_store_is_a_command_and_a_local_url():
    command, url = mlflow_ui.ui_link("sqlite:////data/my studies/mlflow.db", "3", "abc123")
    assert command == "mlflow ui --backend-store-uri 'sqlite:////data/my studies/mlflow.db' --host 127.0.0.1 --port 5000"
    assert url == "http://127.0.0.1:5000/#/experiments/3/runs/abc123?workflowType=machine_learning"
    assert mlflow_ui.ui_link("sqlite:////x.db", "3", port=5055) == (
        "mlflow ui --backend-store-uri sqlite:////x.db --host 127.0.0.1 --port 5055",
        "http://127.0.0.1:5055/#/experiments/3/runs?workflowType=machine_learning")
    command, _ = mlflow_ui.ui_link("postgresql://me:hunter2@db:5432/mlflow", "3", "abc")
    assert "hunter2" not in command and "postgresql://me:***@db:5432/mlflow" in command


def test_ui_link_for_a_tracking_server_is_its_url():
    assert mlflow_ui.ui_link("http://10.0.0.5:5000", "7", "r1") == (
        None, "http://10.0.0.5:5000/#/experiments/7/runs/r1?workflowType=machine_learning")
    # A path prefix is kept, a trailing slash and credentials are not.
    assert mlflow_ui.ui_link("https://user:pw@mlflow.example.org/team/", "7", "r1") == (
        None, "https://mlflow.example.org/team/#/experiments/7/runs/r1?workflowType=machine_learning")
    assert mlflow_ui.ui_link("databricks", "7", "r1") == (None, None)


def test_a_study_ends_with_its_table_and_the_link_to_its_parent_run(study, tmp_path, monkeypatch):
    """run_study end to end with the trials stubbed out: what run_fewshot_grid prints last."""
    from study.driver import cells as stages

    monkeypatch.setattr(driver, "start_ray", lambda *args, **kwargs: None)
    monkeypatch.setattr(stages, "run_study_cells", lambda *args, **kwargs: fake_finals())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = argparse.Namespace(study_dir=str(tmp_path / "study"), resume=False, address=None, tracking_uri=uri,
                              storage_path=None, num_cpus=1, results_file=None)
    text = driver.run_study(study, args)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cloce-quick")
    (parent,) = client.search_runs([experiment.experiment_id])
    assert parent.info.status == "FINISHED"
    table = to_markdown(fewshot_table(fake_finals(), VARIANTS, KS, SEEDS, study.kshot_sets()))
    assert text.startswith(table)
    tail = text[len(table):].splitlines()
    base = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
    assert tail == [
        "",
        "MLflow UI (machine-learning view):",
        f"  start it:   mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000",
        f"  parent run: {base}/{parent.info.run_id}?workflowType=machine_learning",
        f"  all runs:   {base}?workflowType=machine_learning",
    ]
