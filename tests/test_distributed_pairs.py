"""With two Ray Train workers the contrastive step still sees every training prediction:
one process and two workers build the same pairs. The one process is Ray Train's local mode
(`num_workers=0`: the loop runs in this process, world size 1, no worker group and its four
more processes), which builds its pairs as one worker does (tests/test_worker_count.py).
Outside a Tune trial its reports go nowhere: its pairs come from the loop's return value."""
from __future__ import annotations

import pytest

from cloce.config import TrainConfig


@pytest.fixture(scope="module")
def local_ray():
    """A local runtime as the study starts one: the Train monitoring the study switches off
    stays off here too (study_run.FAST_TRIAL_ENV: no preemption watcher actor). Set in this
    process as well, where the trainer sets up its callbacks, and put back afterwards."""
    import ray

    from study.driver.study_run import FAST_TRIAL_ENV

    env = {"HF_HUB_OFFLINE": "1", "RAY_worker_niceness": "0"} | FAST_TRIAL_ENV
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
                 runtime_env={"env_vars": env})
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def no_dropout_model_dir(tmp_path_factory, bert_path) -> str:
    """Dropout off, so training-mode predictions do not depend on how batches are split."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_bert_no_dropout")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertForMaskedLM(config).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(bert_path).save_pretrained(str(directory))
    return str(directory)


def first_epoch_pairs(workers: int, model_dir: str, data_dir, storage) -> dict:
    import ray.train
    import ray.train.torch

    from study.trial.worker import read_final, train_loop_per_worker

    # A vanishing learning rate: every worker layout predicts with (numerically) the same weights.
    config = TrainConfig(variant="cloce_d", model=model_dir, k=4, seed=1, epochs=1, lr=1e-12, cl_lr=1e-12,
                         batch_size=8, kshot_val=True, max_seq_len=64, num_threads=1)
    trainer = ray.train.torch.TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": config.to_dict(), "data": {"data_dir": str(data_dir), "train": None, "val": None,
                                                               "test": None, "format": "auto"},
                           "local_mode": workers == 0},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name=f"pairs-{workers}", storage_path=str(storage)),
    )
    result = trainer.fit()
    # Local mode returns the loop's summary; workers leave it in their last checkpoint.
    final = result.return_value if workers == 0 else read_final(result.checkpoint)
    return final["history"][0]["pairs"]


@pytest.mark.slow
def test_one_and_two_workers_build_the_same_pairs(local_ray, no_dropout_model_dir, tiny_semeval_dir, tmp_path):
    one = first_epoch_pairs(0, no_dropout_model_dir, tiny_semeval_dir, tmp_path)
    two = first_epoch_pairs(2, no_dropout_model_dir, tiny_semeval_dir, tmp_path)
    assert one["train_correct"] + one["train_error"] == 4 * 18  # every prediction, not one worker's half
    assert two == one
    assert one["pairs_built"] > 0
