"""KnowPrompt's K-shot sets, exactly; ready-made K-shot folders; which sets a run names."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cloce.config import ConfigError, TrainConfig
from cloce.data import LabelMap, load_dataset
from cloce.data.kshot_sets import k_shot_splits, read_kshot_folder
from cloce.data.sampling import KShotError, draw_k_shot, knowprompt_k_shot, sample_k_shot
from tests.conftest import make_instance

# The lines KnowPrompt's own generate_k_shot.py writes for SemEval (the file says how it was made).
REFERENCE = Path(__file__).parent / "data" / "knowprompt_semeval_kshot_lines.json"


def test_knowprompt_sets_are_the_lines_its_script_writes_for_k_8_16_32_and_seeds_1_to_5(semeval):
    reference = json.loads(REFERENCE.read_text())["sets"]
    assert sorted(reference) == sorted(f"{k}-{s}" for k in (8, 16, 32) for s in range(1, 6))
    for key, lines in reference.items():
        k, seed = map(int, key.split("-"))
        sample = knowprompt_k_shot(semeval.train, semeval.label_map, k, seed)
        # Same sentences, same order: SemEval's ids are "train:<line>".
        assert list(sample.ids) == [f"train:{line}" for line in lines], key
        assert sample.sampler == "knowprompt"


def test_a_knowprompt_seed_compounds_the_shuffles_of_the_seeds_before_it(semeval):
    """Seed 3 is the list after the shuffles of seeds 1, 2 and 3, not after seed 3's alone."""
    order = list(range(len(semeval.train)))
    np.random.RandomState(3).shuffle(order)  # seed 3 alone, from file order
    alone, seen = [], Counter()
    for position in order:
        label = semeval.train[position].relation
        if seen[label] < 8:
            seen[label] += 1
            alone.append(semeval.train[position].id)
    compounded = set(knowprompt_k_shot(semeval.train, semeval.label_map, 8, 3).ids)
    assert len(compounded & set(alone)) < 30  # chance overlap (the issue saw 8 of 144)
    assert compounded != set(sample_k_shot(semeval.train, semeval.label_map, 8, 3).ids)


LABELS = LabelMap(("no_relation", "born_in", "founded"), "no_relation")
POOL = [make_instance(f"train:{n}", "a b c", (0, 1), (2, 3), label)
        for n, label in enumerate(["no_relation", "born_in", "founded"] * 5, start=1)]


def test_knowprompt_keeps_the_first_k_of_every_label_no_relation_included():
    sample = knowprompt_k_shot(POOL, LABELS, k=2, seed=4)
    assert Counter(i.relation for i in sample.instances) == {"no_relation": 2, "born_in": 2, "founded": 2}
    assert sample.to_json()["sampler"] == "knowprompt"
    assert knowprompt_k_shot(POOL, LABELS, k=2, seed=4).ids == sample.ids  # a function of (K, seed)
    with pytest.raises(ValueError, match="seed must be >= 1"):
        knowprompt_k_shot(POOL, LABELS, k=2, seed=0)
    with pytest.raises(KShotError, match="K=6 is more than"):
        knowprompt_k_shot(POOL, LABELS, k=6, seed=1)


def test_the_sampler_is_a_config_choice_with_a_clear_error():
    assert TrainConfig().kshot_sampler == "knowprompt"
    assert draw_k_shot(POOL, LABELS, 2, 1, "per_label").ids == sample_k_shot(POOL, LABELS, 2, 1).ids
    with pytest.raises(ConfigError, match="kshot_sampler: must be one of knowprompt, per_label"):
        TrainConfig(kshot_sampler="random")


def write_folder(root: Path, k: int, seed: int, records: list[dict], **other_splits: list[dict]) -> Path:
    folder = root / f"{k}-{seed}"
    folder.mkdir(parents=True)
    for split, rows in {"train": records, **other_splits}.items():
        (folder / f"{split}.txt").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def record(text: str, relation: str) -> dict:
    tokens = text.split()
    return {"token": tokens, "h": {"name": tokens[0], "pos": [0, 1]}, "t": {"name": tokens[2], "pos": [2, 3]},
            "relation": relation}


def test_a_ready_made_folder_is_the_set_of_its_k_and_seed_with_ids_of_the_full_train_file(tmp_path):
    full = [make_instance("train:7", "a b c", (0, 1), (2, 3), "born_in"),
            make_instance("train:9", "d e f", (0, 1), (2, 3), "founded")]
    write_folder(tmp_path, 1, 2, [record("d e f", "founded"), record("x y z", "born_in")],
                 val=[record("a b c", "born_in")])
    splits = read_kshot_folder(tmp_path, 1, 2, full, LABELS)
    # Found in the full train file: its id; not found: the folder file and its line.
    assert splits.sample.ids == ("train:9", "1-2/train:2")
    assert splits.sample.sampler == "folder" and splits.sample.source.endswith("1-2/train.txt")
    assert splits.sample.empty_labels == ("no_relation",)
    assert [i.tokens for i in splits.val] == [("a", "b", "c")] and splits.test is None
    with pytest.raises(KShotError, match=r"K-shot folder .*8-1 does not exist \(K=8, seed=1\); .* holds 1-2"):
        read_kshot_folder(tmp_path, 8, 1, full, LABELS)


def test_a_data_set_with_a_kshot_dir_trains_on_its_sets(tmp_path, tiny_semeval_dir):
    lines = (tiny_semeval_dir / "train.txt").read_text().splitlines()
    write_folder(tmp_path / "kshot", 16, 1, [json.loads(line) for line in lines[10:13]])
    dataset = load_dataset(tiny_semeval_dir, kshot_dir=tmp_path / "kshot")
    splits = k_shot_splits(dataset, 16, 1)
    assert splits.sample.ids == ("train:11", "train:12", "train:13")
    with pytest.raises(Exception, match="K-shot folder not found"):
        load_dataset(tiny_semeval_dir, kshot_dir=tmp_path / "nowhere")
    # `cloce train --kshot-dir` reaches the data config the run loads
    from cloce.cli import build_parser
    args = build_parser().parse_args(["train", "--data-dir", str(tiny_semeval_dir), "--kshot-dir", str(tmp_path / "kshot")])
    assert k_shot_splits(load_dataset(args.data_dir, kshot_dir=args.kshot_dir), 16, 1).sample.ids == splits.sample.ids
