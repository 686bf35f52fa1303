"""The results page of experiments/fewshot_results.py: rows rebuilt from the results files,
and the Hugging Face Trainer peer on a tiny model."""
from __future__ import annotations

import json

import pytest

from experiments.results_report import PEER, peer_finals, provenance, render, study_finals, superseded


def record(stage: str, variant: str, k: int, seed: int, val: float, test: float, **extra) -> dict:
    return {"stage": stage, "variant": variant, "k": k, "seed": seed, "status": "FINISHED", "val_micro_f1": val,
            "test_micro_f1": test, "test_macro_f1_semeval": test, "best_epoch": 2, "config": {"lr": extra.get("lr", 1e-4)},
            "history": [{"epoch": 1, "val_micro_f1": val / 2}, {"epoch": 2, "val_micro_f1": val}]}


def test_the_best_search_trial_is_the_search_seeds_final_run():
    records = [record("search", "prompt_ki", 8, 1, 0.2, 0.30, lr=1e-4), record("search", "prompt_ki", 8, 1, 0.4, 0.35, lr=2e-4),
               record("final", "prompt_ki", 8, 2, 0.3, 0.33, lr=2e-4)]
    finals = study_finals(records)
    assert sorted((r["seed"], r["test_micro_f1"]) for r in finals) == [(1, 0.35), (2, 0.33)]


def test_the_peer_keeps_the_lr_chosen_on_val():
    peer = [{"stage": "search", "k": 8, "seed": 1, "lr": lr, "val_micro_f1": val, "test_micro_f1": val,
             "test_macro_f1_semeval": val, "best_epoch": 1, "val_per_epoch": [val]}
            for lr, val in ((1e-4, 0.1), (2e-4, 0.3))]
    peer.append(peer[1] | {"stage": "final", "seed": 2, "test_micro_f1": 0.25})
    peer.append(peer[0] | {"stage": "final", "seed": 2, "test_micro_f1": 0.99})  # another lr: not the peer's
    rows = peer_finals(peer)
    assert [(r["variant"], r["seed"], r["test_micro_f1"]) for r in rows] == [(PEER, 1, 0.3), (PEER, 2, 0.25)]


def test_the_page_marks_what_has_not_run_yet(tmp_path):
    fewshot = tmp_path / "fewshot.jsonl"
    fewshot.write_text("\n".join(json.dumps(record("final", "finetune", 8, s, 0.3, 0.3 + s / 100)) for s in (1, 2)))
    page = render(fewshot, tmp_path / "none.jsonl", tmp_path / "none.jsonl", check_fingerprints=False)
    assert "| finetune | 31.5 ± 0.7 |" in page
    assert "| prompt_ki | missing |" in page and "2/5" in page


def test_records_of_an_earlier_configuration_are_set_apart_and_commits_counted():
    from study.configuration.study_file import load_study_config

    now = load_study_config("semeval_results").cell_fingerprint("prompt_ki", 8)
    records = [record("final", "prompt_ki", 8, 2, 0.3, 0.3) | {"fingerprint": now, "code": "abc1234"},
               record("final", "prompt_ki", 8, 3, 0.3, 0.3) | {"fingerprint": now},
               record("final", "prompt_ki", 8, 4, 0.2, 0.2) | {"fingerprint": "an-older-one"}]
    assert [r["seed"] for r in superseded(records, "semeval_results")] == [4]
    assert provenance(records[:2]) == "`abc1234` 1, `unrecorded` 1"


@pytest.mark.slow
def test_the_hf_trainer_peer_runs_and_is_not_run_twice(tiny_semeval_dir, tiny_model_dir, tmp_path):
    from experiments.hf_peer import PeerBudget, run_peer
    from cloce.data.dataset import load_dataset

    dataset = load_dataset(tiny_semeval_dir)
    budget = PeerBudget(epochs=2, batch_size=8, val_sample=None, lrs=(1e-4, 1e-3), search_seed=1, seeds=(1, 2), num_threads=1)
    results = tmp_path / "peer.jsonl"
    finals = run_peer(dataset, [2], budget, results, model=tiny_model_dir)
    assert [r["seed"] for r in finals] == [1, 2]
    lines = results.read_text().splitlines()
    assert len(lines) == 3  # two lrs on seed 1, then seed 2 with the better one
    assert all(0 <= json.loads(line)["test_micro_f1"] <= 1 and len(json.loads(line)["val_per_epoch"]) == 2 for line in lines)
    run_peer(dataset, [2], budget, results, model=tiny_model_dir)
    assert results.read_text().splitlines() == lines
