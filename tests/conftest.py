"""Shared fixtures: tiny randomly initialised backbones with real tokenizers, tiny data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

# Under CI every test must run: a skip for missing data or a missing dependency is a
# failure there (.ci/run sets CI=1), or a forgotten install passes as "skipped".
UNDER_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _skip_is_a_failure(report, item=None) -> bool:
    if not (UNDER_CI and report.skipped) or hasattr(report, "wasxfail"):
        return False
    return item is None or item.get_closest_marker("ci_may_skip") is None


def _as_failure(report, where: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{where} skipped under CI=1, where nothing may skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _skip_is_a_failure(report, item):
        _as_failure(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped at import (pytest.importorskip, a module-level skip)."""
    outcome = yield
    report = outcome.get_result()
    if _skip_is_a_failure(report):
        _as_failure(report, collector.nodeid)

# The files that take minutes, longest first (by their time on 2 cores: `pytest -n 0 --durations=30`;
# test_gpu_check.py by its 115 s in the whole suite under -n 2, `CI=1 python -m pytest -q --durations=40`
# in a fresh clone and venv, where its compile starts cold beside the others):
# under xdist (pyproject: two processes, a whole file each) they start at once and the quick
# files fill the gaps; left to the end, one of them would be the suite's tail.
LONGEST_FIRST = ("test_local_cluster.py", "test_slurm.py", "test_reliability_study.py", "test_study_ledger.py",
                 "test_gpu_check.py", "test_study_asha_failed_cell.py", "test_ray_job_submit.py",
                 "test_study_pool_run.py")


def pytest_collection_modifyitems(config, items):
    """The longest files, then the other files with slow tests, then the rest; each file's tests
    keep their order (the sort is stable), so a module fixture still serves them in one go."""
    def rank(item) -> tuple[int, int]:
        name = item.path.name
        if name in LONGEST_FIRST:
            return 0, LONGEST_FIRST.index(name)
        return (1 if item.get_closest_marker("slow") is not None else 2), 0

    by_file: dict = {}
    for item in items:  # a file ranks by its slowest test
        by_file[item.path] = min(by_file.get(item.path, (3, 0)), rank(item))
    items.sort(key=lambda item: by_file[item.path])


from cloce.backbone import default_model_path  # noqa: E402
from cloce.data.types import EntityMention, LabelMap, RelationInstance  # noqa: E402
from tests.support.tiny_inputs import make_semeval_slice, make_tiny_model, save_tiny_bert  # noqa: E402


@pytest.fixture(scope="session")
def bert_path() -> str:
    """The bundled all-MiniLM-L6-v2 directory: its tokenizer (and, for the smoke test, weights)."""
    return default_model_path()


@pytest.fixture(scope="session")
def tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256, type_vocab_size=2,
    )


@pytest.fixture(scope="session")
def roberta_path(tmp_path_factory) -> str:
    """A small byte-level BPE tokenizer saved as a RoBERTa checkpoint directory (no weights)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    corpus = [
        "the relation of head and tail is",
        "the fire caused smoke in the old house .",
        "a man was driving his car to the city of paris .",
        "the company hired an engineer from berlin .",
    ] * 20
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(corpus, vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    directory = tmp_path_factory.mktemp("roberta_tok")
    bpe.save_model(str(directory))
    tokenizer = RobertaTokenizer(
        vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"), add_prefix_space=True
    )
    tokenizer.save_pretrained(str(directory))
    return str(directory)


@pytest.fixture(scope="session")
def tiny_roberta_config(roberta_path):
    from transformers import AutoTokenizer, RobertaConfig

    size = len(AutoTokenizer.from_pretrained(roberta_path))
    return RobertaConfig(
        vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=260, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
    )


# Nine tiny sentences, three relations (word-index spans, end exclusive): training-loop tests.
TINY_ROWS = [
    ("the fire caused smoke in the house", (1, 2), (3, 4), "Cause-Effect(e1,e2)"),
    ("the virus caused a fever yesterday", (1, 2), (4, 5), "Cause-Effect(e1,e2)"),
    ("the storm caused floods in the valley", (1, 2), (3, 4), "Cause-Effect(e1,e2)"),
    ("the wheel of the car was broken", (1, 2), (4, 5), "Component-Whole(e1,e2)"),
    ("the door of the house was open", (1, 2), (4, 5), "Component-Whole(e1,e2)"),
    ("the keys of the piano were white", (1, 2), (4, 5), "Component-Whole(e1,e2)"),
    ("a man saw a dog in the park", (1, 2), (4, 5), "Other"),
    ("the girl read a book at night", (1, 2), (4, 5), "Other"),
    ("the cat watched the bird outside", (1, 2), (4, 5), "Other"),
]


def make_instance(id_: str, text: str, head: tuple[int, int], tail: tuple[int, int], relation: str,
                  head_type: str | None = None, tail_type: str | None = None) -> RelationInstance:
    return RelationInstance(
        id_, tuple(text.split()), EntityMention(*head, head_type), EntityMention(*tail, tail_type), relation
    )


@pytest.fixture(scope="session")
def semeval():
    """The shared SemEval copy ($CLOCE_DATA_DIR, else ../shared/datasets/semeval), read once."""
    from cloce.data.dataset import default_data_dir, load_dataset

    folder = default_data_dir()
    if folder is None or not (folder / "train.txt").is_file():
        pytest.skip(f"SemEval not found at {folder}; set CLOCE_DATA_DIR to its folder")
    return load_dataset(folder)


@pytest.fixture
def semeval_labels() -> LabelMap:
    return LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random BERT masked LM (the study loads it by path), as the benchmarks and the demo make it."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> str:
    """A tiny random BERT without an MLM head, like the bundled sentence encoder."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_encoder"), with_mlm_head=False)


@pytest.fixture(scope="session")
def tiny_semeval_dir(tmp_path_factory):
    """Every train sentence of SemEval (K-shot samples need them), a slice of val and test."""
    from cloce.data.dataset import default_data_dir

    source = default_data_dir()
    if source is None or not (source / "train.txt").exists():
        pytest.skip(f"SemEval not found at {source}")
    return Path(make_semeval_slice(tmp_path_factory.mktemp("semeval_slice"), source))


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models in this process: a second thread costs more than it brings (and the CPU is
    shared with the studies' trial processes). Subprocesses keep their own settings."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory):
    """`family_checkpoint(name, with_head)`: a tiny random checkpoint of one encoder family
    (tests/families.py) with a tokenizer of its kind trained on 300 SemEval sentences,
    built once per session on first use."""
    from cloce.data.dataset import default_data_dir
    from tests.families import FAMILIES, corpus_sentences, save_family

    source = default_data_dir()
    if source is None or not (source / "train.txt").exists():
        pytest.skip(f"SemEval not found at {source}: the family tokenizers are trained on it")
    sentences = corpus_sentences(source)
    families = {f.name: f for f in FAMILIES}
    root = tmp_path_factory.mktemp("families")
    built: dict[tuple[str, bool], str] = {}

    def checkpoint(name: str, with_head: bool) -> str:
        if (name, with_head) not in built:
            where = root / f"{name}-{'mlm' if with_head else 'headless'}"
            built[name, with_head] = save_family(families[name], where, sentences, with_head)
        return built[name, with_head]

    return checkpoint
