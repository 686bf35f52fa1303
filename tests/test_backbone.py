"""A checkpoint without an MLM head (the bundled sentence encoder) gets a fresh transform
that starts as the identity; a checkpoint with one keeps its own."""
import torch
from safetensors.torch import load_file

from cloce.backbone import load_masked_lm


def dense_of(loaded):
    return loaded.model.get_submodule(loaded.head_name).predictions.transform.dense


def test_a_fresh_transform_starts_as_the_identity(tiny_encoder_dir):
    loaded = load_masked_lm(tiny_encoder_dir)
    assert not loaded.head_pretrained
    dense = dense_of(loaded)
    assert torch.equal(dense.weight, torch.eye(dense.in_features)) and not dense.bias.any()


def test_a_random_fresh_transform_is_not_the_identity(tiny_encoder_dir):
    dense = dense_of(load_masked_lm(tiny_encoder_dir, fresh_head_init="random"))
    assert not torch.allclose(dense.weight, torch.eye(dense.in_features), atol=0.1)


def test_a_pretrained_head_is_loaded_untouched(tiny_model_dir):
    from pathlib import Path

    loaded = load_masked_lm(tiny_model_dir)
    assert loaded.head_pretrained
    saved = load_file(str(Path(tiny_model_dir) / "model.safetensors"))["cls.predictions.transform.dense.weight"]
    assert torch.equal(dense_of(loaded).weight.detach(), saved)
