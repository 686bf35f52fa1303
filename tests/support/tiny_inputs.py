"""The small inputs the local cluster recipe (experiments/local_cluster/cli.py), the benchmarks
(benchmarks/bench_pool.py) and the tests train on: a tiny random BERT masked LM with the
bundled tokenizer, and a SemEval slice (every training sentence, every 40th val and 60th test
sentence), each written once to a directory and reused from there.
"""
from __future__ import annotations

from pathlib import Path


def make_tiny_model(directory: Path) -> str:
    """A tiny random BERT masked LM with the bundled tokenizer (as tests/conftest.py)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from cloce.backbone import default_model_path

    if (directory / "config.json").exists():
        return str(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    BertForMaskedLM(config).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(str(directory))
    return str(directory)


def make_semeval_slice(directory: Path, source: Path | None = None) -> str:
    """Every SemEval training sentence (K-shot samples need them), every 40th val, 60th test."""
    from cloce.data.dataset import default_data_dir

    source = Path(source) if source else default_data_dir()
    if source is None or not (source / "train.txt").exists():
        raise FileNotFoundError(f"SemEval not found at {source} (pass --data-dir)")
    directory.mkdir(parents=True, exist_ok=True)
    for split, every in (("train", 1), ("val", 40), ("test", 60)):
        lines = (source / f"{split}.txt").read_text().splitlines()
        (directory / f"{split}.txt").write_text("\n".join(lines[::every]) + "\n")
    (directory / "rel2id.json").write_text((source / "rel2id.json").read_text())
    return str(directory)
