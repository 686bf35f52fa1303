"""The small inputs the local cluster recipe (experiments/local_cluster/cli.py), the benchmarks
(benchmarks/bench_pool.py) and the tests train on: a tiny random BERT masked LM with the
bundled tokenizer (written once to its directory, reused from there), and a SemEval slice
(every training sentence, every 40th val and 60th test sentence).
"""
from __future__ import annotations

from pathlib import Path


def make_tiny_model(directory: Path) -> str:
    """A tiny random BERT masked LM with the bundled tokenizer, made once in `directory`."""
    if (directory / "config.json").exists():
        return str(directory)
    return save_tiny_bert(directory, with_mlm_head=True)


def save_tiny_bert(directory: Path, with_mlm_head: bool) -> str:
    """A tiny random BERT (with or without its MLM head) saved like a hub checkpoint, with the
    bundled tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

    from cloce.backbone import default_model_path

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    model = BertForMaskedLM(config) if with_mlm_head else BertModel(config, add_pooling_layer=False)
    model.save_pretrained(str(directory))
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
