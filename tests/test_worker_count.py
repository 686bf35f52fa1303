"""`batch_size` and `cl_batch_size` are global: the training loop run by one process and by two
(DistributedDataParallel over gloo, as a Ray Train trial with two workers runs it) gives the
same per-epoch numbers, to float summation order.

Dropout is off in the tiny model: with it, every worker draws its own masks over its share,
and the two runs differ as any two dropout draws do."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cloce.config import TrainConfig
from cloce.runtime import Runtime
from cloce.train import train
from tests.test_train_loop import tiny_dataset

# 9 instances in global batches of 4: 4, 4, 1, so the last leaves one worker a stand-in row;
# 3 pairs per contrastive step split 2 + 1. The trainable margin lives outside the model.
CONFIG = TrainConfig(variant="cloce_d", k=3, seed=1, epochs=3, batch_size=4, cl_batch_size=3, lr=1e-3, cl_lr=1e-3,
                     trainable_margin=True, max_seq_len=64, num_threads=1)


def no_dropout_bert():
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=256, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


def epoch_numbers(history) -> list[dict]:
    return [{"train_loss": r.train_loss, "cl_loss": r.cl_loss, "val_micro_f1": r.val_micro_f1, "margin": r.margin,
             "pairs_digest": r.pairs["pairs_digest"]} for r in history]


# KnowPrompt's KE term draws its negative spans per (instance, epoch): the same on any number of workers.
KNOWPROMPT = TrainConfig(variant="knowprompt", k=3, seed=1, epochs=2, batch_size=4, lr=1e-3, ke_weight=1.0,
                         virtual_lr=3e-3, max_seq_len=64, num_threads=1)

# PTR: its sub-prompts' masks are scored on every worker's share, the loss summed over them.
PTR = TrainConfig(variant="ptr", k=3, seed=1, epochs=2, batch_size=4, lr=1e-3, max_seq_len=64, num_threads=1)


# Each config the two-process run trains, in this order, in the same two processes.
TWO_WORKER_CONFIGS = {"cloce_d": CONFIG, "knowprompt": KNOWPROMPT, "ptr": PTR}


def train_as_worker(rank: int, world_size: int, directory: str) -> None:
    """One process of a `world_size`-process run; trains every config of TWO_WORKER_CONFIGS in
    turn (one spawn for all three: a spawned process imports torch and transformers again) and
    writes each one's per-epoch numbers."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{directory}/rendezvous", rank=rank, world_size=world_size)
    try:
        runtime = Runtime(
            device=torch.device("cpu"), world_size=world_size, rank=rank,
            # As Ray's prepare_model: CLoCE's contrastive step leaves the MLM head unused.
            prepare_model=lambda model: DistributedDataParallel(model, find_unused_parameters=True),
        )
        for name, config in TWO_WORKER_CONFIGS.items():
            result = train(config, tiny_dataset(), runtime=runtime, backbone_config=no_dropout_bert())
            numbers = {"epochs": epoch_numbers(result.history), "test_micro_f1": result.test.micro_f1}
            (Path(directory) / f"{name}-rank{rank}.json").write_text(json.dumps(numbers))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> dict[str, list[dict]]:
    """Each config's numbers from both ranks of one two-process run, the three configs in turn
    (6-9 s alone on 2 cores at 99d17da, `pytest -n 0 --durations=3 tests/test_worker_count.py`).
    A config that fails errors all three tests here."""
    directory = tmp_path_factory.mktemp("two_workers")
    torch.multiprocessing.start_processes(train_as_worker, args=(2, str(directory)), nprocs=2, start_method="spawn")
    return {name: [json.loads((directory / f"{name}-rank{rank}.json").read_text()) for rank in (0, 1)]
            for name in TWO_WORKER_CONFIGS}


@pytest.mark.slow  # two spawned training processes
def test_one_and_two_workers_give_the_same_numbers(two_workers):
    one = train(CONFIG, tiny_dataset(), backbone_config=no_dropout_bert())
    ranks = two_workers["cloce_d"]

    assert ranks[0] == ranks[1]  # every worker reports the gathered numbers
    two = ranks[0]["epochs"]
    assert [r["pairs_digest"] for r in two] == [r.pairs["pairs_digest"] for r in one.history]  # same pairs
    assert all(r.pairs["pairs_built"] > 0 for r in one.history)  # the contrastive step ran every epoch
    for epoch_one, epoch_two in zip(epoch_numbers(one.history), two, strict=True):
        assert epoch_two == pytest.approx(epoch_one, rel=1e-5, abs=1e-7)
    assert ranks[0]["test_micro_f1"] == pytest.approx(one.test.micro_f1)


@pytest.mark.slow  # two spawned training processes
@pytest.mark.parametrize("name", ["knowprompt", "ptr"])
def test_the_papers_baselines_on_one_and_two_workers_give_the_same_numbers(two_workers, name):
    one = train(TWO_WORKER_CONFIGS[name], tiny_dataset(), backbone_config=no_dropout_bert())
    two = two_workers[name][0]
    for epoch_one, epoch_two in zip(one.history, two["epochs"], strict=True):
        assert epoch_two["train_loss"] == pytest.approx(epoch_one.train_loss, rel=1e-5)
        assert epoch_two["val_micro_f1"] == pytest.approx(epoch_one.val_micro_f1)
