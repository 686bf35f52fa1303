"""The results file (--results-file): finished trials are written as they end, and a re-run
runs only what the file does not hold."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from study.driver.ledger import TrialLedger, code_version
from tests.test_study_e2e import SCRIPT, study_env


def test_a_damaged_line_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"stage": "search", "variant": "prompt", "k": 8}\n{"stage": "se\n')
    with pytest.raises(ValueError, match=r"results.jsonl, line 2: not a JSON trial record"):
        TrialLedger(path)


def test_records_are_found_by_stage_variant_and_k(tmp_path):
    ledger = TrialLedger(tmp_path / "sub" / "results.jsonl")
    ledger.append({"stage": "search", "variant": "prompt", "k": 8, "seed": 1})
    ledger.append({"stage": "final", "variant": "prompt", "k": 8, "seed": 2})
    again = TrialLedger(tmp_path / "sub" / "results.jsonl")
    assert [r["seed"] for r in again.of("final", "prompt", 8)] == [2]
    assert again.of("search", "prompt", 16) == []


def run_study(data_dir, model_dir, tmp_path, name: str, results, num_samples: int, seeds=(1, 2)):
    command = [
        sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--model", str(model_dir), "--variants", "prompt_ki",
        "--ks", "2", "--seeds", *map(str, seeds), "--num-samples", str(num_samples), "--epochs", "1",
        "--study-dir", str(tmp_path / name), "--tracking-uri", f"sqlite:///{tmp_path / name}.db", "--num-cpus", "2",
        "--set", "search.asha=false", "--set", "train.num_threads=1", "--results-file", str(results),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=study_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def decided(study):
    """As the driver takes a SemEval study's fingerprints: train.sentence_markers decided by its labels."""
    from cloce.data.types import LabelMap

    return study.with_label_decisions(LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"]))


@pytest.mark.slow
def test_a_rerun_continues_from_the_results_file(tiny_semeval_dir, tiny_model_dir, tmp_path):
    """One search trial + seed 2, then the same study asked for two search trials, elsewhere
    (a fresh study dir and MLflow store): only the missing search trial runs."""
    results = tmp_path / "results.jsonl"
    first = run_study(tiny_semeval_dir, tiny_model_dir, tmp_path, "first", results, num_samples=1)
    assert first.count("] start  ") == 2
    # Both trials finished and are recorded: neither keeps a checkpoint (they once filled a disk).
    assert not [p for p in (tmp_path / "first").rglob("checkpoint_*") if p.is_dir()]
    before = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["stage"], r["seed"]) for r in before] == [("search", 1), ("final", 2)]
    assert all(r["code"] == code_version() for r in before) and code_version()  # the commit that ran them

    second = run_study(tiny_semeval_dir, tiny_model_dir, tmp_path, "second", results, num_samples=2)
    assert "results file" in second and "2 finished trials, not run again" in second
    after = [json.loads(line) for line in results.read_text().splitlines()]
    assert after[:2] == before
    ran = after[2:]
    assert ran[0]["stage"] == "search" and ran[0]["config"] != before[0]["config"], \
        "the resumed search asked again for a point it had"
    # Seed 2 runs again only if the new search trial beat the recorded one: its recorded final
    # ran another config then. (Seed 1, the search seed, reuses the chosen search trial either way.)
    chosen = json.loads((tmp_path / "second" / "cells" / "prompt_ki-K2.json").read_text())["best_config"]
    searched = [before[0], ran[0]]
    assert chosen == max(searched, key=lambda r: r["val_micro_f1"])["config"]
    expected = [("search", 1)] + ([] if chosen == before[0]["config"] else [("final", 2)])
    assert [(r["stage"], r["seed"]) for r in ran] == expected
    assert second.count("] start  ") == len(expected)
    assert "| prompt_ki |" in second and "2/2" in second

    # The search is whole in the results file: a third seed runs alone, on the chosen config.
    third = run_study(tiny_semeval_dir, tiny_model_dir, tmp_path, "third", results, num_samples=2, seeds=(1, 2, 3))
    last = [json.loads(line) for line in results.read_text().splitlines()][len(after):]
    assert [(r["stage"], r["seed"], r["config"]) for r in last] == [("final", 3, chosen)]
    assert third.count("] start  ") == 1 and "3/3" in third


def test_a_changed_experiment_does_not_reuse_old_records(tmp_path):
    from study.configuration.study_file import load_study_config

    base = decided(load_study_config("quick"))
    same = decided(load_study_config("quick", {"study.seeds": [1, 2], "train.num_threads": 2, "search.max_concurrent_trials": 1}))
    longer = decided(load_study_config("quick", {"train.epochs": 3}))
    assert base.cell_fingerprint("prompt_ki", 8) == same.cell_fingerprint("prompt_ki", 8)
    assert base.cell_fingerprint("prompt_ki", 8) != longer.cell_fingerprint("prompt_ki", 8)
    assert base.cell_fingerprint("prompt_ki", 8) != base.cell_fingerprint("prompt_ki", 16)

    ledger = TrialLedger(tmp_path / "results.jsonl")
    ledger.append({"stage": "final", "variant": "prompt_ki", "k": 8, "seed": 2,
                   "fingerprint": base.cell_fingerprint("prompt_ki", 8)})
    assert len(ledger.of("final", "prompt_ki", 8, base.cell_fingerprint("prompt_ki", 8))) == 1
    assert ledger.of("final", "prompt_ki", 8, longer.cell_fingerprint("prompt_ki", 8)) == []


@pytest.mark.parametrize("prompt_only", [{"train.mlm_adapt_steps": 100}, {"train.sentence_markers": False},
                                         {"train.fresh_head_init": "random"}, {"train.label_init": "role"},
                                         {"train.template": "role_of"}, {"train.mlm_adapt_head_only": True, "train.mlm_adapt_steps": 100}])
def test_prompt_only_options_change_the_prompt_cells_only(prompt_only):
    from study.configuration.study_file import load_study_config

    base, adapted = decided(load_study_config("quick")), decided(load_study_config("quick", prompt_only))
    assert base.cell_fingerprint("finetune", 8) == adapted.cell_fingerprint("finetune", 8)
    assert base.cell_fingerprint("prompt_ki", 8) != adapted.cell_fingerprint("prompt_ki", 8)


def test_how_the_trials_run_is_in_the_fingerprint_where_it_changes_numbers(monkeypatch):
    import cloce.runtime
    from study.configuration.study_file import load_study_config

    def fingerprint(native: bool = True, **overrides) -> str:
        monkeypatch.setattr(cloce.runtime, "bf16_native", lambda device_type: native)
        return decided(load_study_config("quick", overrides)).cell_fingerprint("cloce_d", 8)

    local = fingerprint()  # quick: local mode (workers_per_trial = 0), CPU, bf16 asked for
    assert fingerprint(**{"resources.workers_per_trial": 1, "resources.cpus_per_worker": 2}) == local  # one worker
    assert fingerprint(**{"resources.workers_per_trial": 2}) != local
    assert fingerprint(**{"resources.use_gpu": True}) != local
    assert fingerprint(native=False) != local  # bf16 asked for, fp32 run: other numbers
    assert fingerprint(native=False, **{"train.bf16": False}) == fingerprint(**{"train.bf16": False}) != local


def test_records_of_the_neutral_setup_keep_their_fingerprints(monkeypatch):
    """The committed results ran in local mode on a CPU with AVX512-BF16 (bf16 active)."""
    from pathlib import Path

    import cloce.runtime
    from study.configuration.study_file import load_study_config

    monkeypatch.setattr(cloce.runtime, "bf16_native", lambda device_type: True)
    study = load_study_config("semeval_results")
    lines = (Path(__file__).parents[1] / "experiments/results/semeval_fewshot.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert sum(r.get("fingerprint") == study.cell_fingerprint(r["variant"], r["k"]) for r in records) >= 100


def test_a_trial_record_says_how_the_trial_ran():
    from study.trial.trainable import trial_record

    record = trial_record({"final": 1, "world_size": 2, "bf16_active": 1}, {"seed": 1}, "prompt_ki", 8, "final")
    assert (record["world_size"], record["bf16_active"]) == (2, True)
    assert trial_record({}, {"seed": 1}, "prompt_ki", 8, "final", error="boom")["bf16_active"] is None


def test_a_trial_record_carries_per_sentence_test_labels_and_the_direction_report():
    from study.trial.trainable import trial_record

    labels = {"gold": [0, 1, 2], "pred": [0, 2, 2], "no_relation_id": 0}
    metrics = {"final": 1, "test_micro_f1": 0.5, "test_labels_json": json.dumps(labels),
               "test_wrong_direction_rate": 0.5, "test_undirected_accuracy": 1.0}
    record = trial_record(metrics, {"seed": 1}, "prompt_ki", 8, "final")
    assert record["test_labels"] == labels
    assert (record["test_wrong_direction_rate"], record["test_undirected_accuracy"]) == (0.5, 1.0)
    older = trial_record({"final": 1, "test_micro_f1": 0.5}, {"seed": 1}, "prompt_ki", 8, "final")
    assert older["test_labels"] is None and older["test_wrong_direction_rate"] is None
