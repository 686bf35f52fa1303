"""Every variant on every encoder family (tests/families.py), with its MLM head and headless:
training, the head it scores with, its weights when the virtual tokens are added, its
tokenizer's pieces, and the checkpoint round trip."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cloce.backbone import load_masked_lm
from cloce.checkpoint import load_checkpoint, save_checkpoint
from cloce.data.dataset import default_data_dir
from cloce.encoding import EncodedSplit, load_word_tokenizer, word_pieces
from cloce.mlm_head import UnsupportedBackbone, add_vocabulary_rows, mlm_logits, transform_dense
from cloce.pipeline import build_pipeline
from cloce.runtime import Runtime
from cloce.inference import predict_split
from cloce.train import train
from cloce.variants import VARIANTS, get_variant
from tests.families import FAMILIES, FAMILY_NAMES
from tests.test_train_loop import LABELS, tiny_config, tiny_dataset

HEADS = {"with_head": True, "headless": False}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_round_trips_on_every_family(variant, family, head, family_checkpoint, tmp_path):
    directory = family_checkpoint(family, HEADS[head])
    result = train(tiny_config(variant=variant, epochs=1, model=directory), tiny_dataset())
    pipeline = result.pipeline
    assert len(result.history) == 1 and torch.isfinite(torch.tensor(result.history[0].train_loss))
    if get_variant(variant).head != "marker":  # the stored head is used when there is one
        assert pipeline.head_pretrained is HEADS[head] and pipeline.head_summary.startswith("MLM head ")
    # Checkpoint and predict: the same logits after reload.
    save_checkpoint(pipeline, tmp_path / "ckpt")
    split = EncodedSplit(pipeline.encode(pipeline.tokenize(tiny_dataset().test)))
    before = predict_split(pipeline.model.eval(), pipeline, split, 8, Runtime(device=torch.device("cpu")))
    reloaded = load_checkpoint(tmp_path / "ckpt")
    after = predict_split(reloaded.model, reloaded, split, 8, Runtime(device=torch.device("cpu")))
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    assert reloaded.head_parts == pipeline.head_parts and reloaded.head_pretrained == pipeline.head_pretrained


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_adding_virtual_tokens_changes_no_pretrained_head_weight(family, head, family_checkpoint):
    loaded = load_masked_lm(family_checkpoint(family, HEADS[head]))
    model, base = loaded.model, loaded.model.get_input_embeddings().num_embeddings
    before = {name: p.detach().clone() for name, p in model.named_parameters(remove_duplicate=False)}
    states = torch.randn(3, model.config.hidden_size)
    logits_before = mlm_logits(model, loaded.head, states).detach()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    rows = torch.randn(4, model.get_input_embeddings().embedding_dim)

    add_vocabulary_rows(model, loaded.head, rows)

    after = dict(model.named_parameters(remove_duplicate=False))
    assert after.keys() == before.keys()
    for name, old in before.items():
        new = after[name].detach()
        assert new.shape[1:] == old.shape[1:] and new.shape[0] in (old.shape[0], old.shape[0] + 4), name
        assert torch.equal(new[: old.shape[0]], old), f"{name}: a pre-trained weight changed"
        if new.shape[0] != old.shape[0] and new.dim() == 1:
            assert not new[old.shape[0]:].any(), f"{name}: a new vocabulary bias is not zero"
    assert torch.equal(model.get_input_embeddings().weight[base:].detach(), rows)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    logits_after = mlm_logits(model, loaded.head, states).detach()
    assert logits_after.shape[-1] == base + 4
    torch.testing.assert_close(logits_after[:, :base], logits_before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_sentence_is_split_into_the_tokenizers_own_pieces(family, family_checkpoint):
    tokenizer = load_word_tokenizer(family_checkpoint(family, True))
    lines = (default_data_dir() / "train.txt").read_text().splitlines()[300:400]  # not seen in training
    sentences = [json.loads(line)["token"] for line in lines]
    # A generic byte-level BPE tokenizer (ModernBERT's) reads a word start as the space before it.
    byte_level = next(f for f in FAMILIES if f.name == family).tokenizer == "bytelevel_generic"
    for words, pieces in zip(sentences, word_pieces(tokenizer, sentences)):
        text = (" " if byte_level else "") + " ".join(words)
        assert [p for word in pieces for p in word] == tokenizer(text, add_special_tokens=False)["input_ids"]
        if byte_level:
            assert all(tokenizer.convert_ids_to_tokens(word[0]).startswith("\u0120") for word in pieces)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_sdpa_attention_wherever_the_family_has_it(family, family_checkpoint):
    model = load_masked_lm(family_checkpoint(family, True)).model
    expected = "sdpa" if type(model)._supports_sdpa else "eager"  # DeBERTa's disentangled attention has none
    assert model.config._attn_implementation == expected


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_fresh_head_starts_as_the_identity_even_where_it_is_not_square(family, family_checkpoint):
    loaded = load_masked_lm(family_checkpoint(family, False))
    dense = transform_dense(loaded.model, loaded.head)
    assert not loaded.head_pretrained
    assert torch.equal(dense.weight, torch.eye(dense.out_features, dense.in_features))


@pytest.mark.parametrize("stored, config_says", [("deberta-v3", True), ("deberta-v2", False)])
def test_a_stored_deberta_head_is_used_whatever_layout_the_config_says(stored, config_says, family_checkpoint, tmp_path):
    directory = Path(shutil.copytree(family_checkpoint(stored, True), tmp_path / "model"))
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"legacy": config_says}))
    loaded = load_masked_lm(str(directory))
    assert loaded.head_pretrained and loaded.head.parts == (("cls",) if stored == "deberta-v2" else ("lm_predictions",))


def test_a_family_without_a_masked_lm_fails_before_training(family_checkpoint, tmp_path):
    from transformers import GPT2Config, GPT2Model

    directory = Path(shutil.copytree(family_checkpoint("bert", True), tmp_path / "gpt2"))
    for weights in directory.glob("*.safetensors"):
        weights.unlink()
    GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=1500)).save_pretrained(str(directory))
    with pytest.raises(UnsupportedBackbone, match="GPT2Config.*masked-LM"):
        build_pipeline(get_variant("prompt_ki"), LABELS, ("entity",), str(directory))


def test_compiling_the_encoder_keeps_the_checkpoint_names(family_checkpoint):
    from cloce.runtime import compile_encoder

    pipeline = build_pipeline(get_variant("prompt_ki"), LABELS, ("entity",), family_checkpoint("modernbert", True))
    names = list(pipeline.model.state_dict())
    compile_encoder(pipeline.model)
    assert list(pipeline.model.state_dict()) == names  # Module.compile: no `_orig_mod.` prefix


def test_train_compiles_the_encoder_when_asked(family_checkpoint, monkeypatch):
    import cloce.train

    compiled = []
    monkeypatch.setattr(cloce.train, "compile_encoder", compiled.append)
    directory = family_checkpoint("bert", True)
    result = train(tiny_config(epochs=1, model=directory, compile=True), tiny_dataset())
    assert compiled == [result.pipeline.model]
    plain = []
    monkeypatch.setattr(cloce.train, "compile_encoder", plain.append)
    train(tiny_config(epochs=1, model=directory), tiny_dataset())
    assert plain == []


@pytest.mark.slow
def test_a_compiled_run_learns_like_an_eager_one(family_checkpoint):
    """cloce_d: the compiled encoder through the CE, contrastive and evaluation passes. The
    marker path (finetune) and prompt_ki's CE epoch, compiled against eager on the same weights,
    batches and dropout masks, are the gpu_check dry run's step 5 (tests/test_gpu_check.py); a
    cold inductor compile costs ~40 CPU s here, so finetune's compiled train() run went from
    here (its compiled evaluation passes are no longer run anywhere in the suite)."""
    directory = family_checkpoint("bert", True)
    eager = train(tiny_config(variant="cloce_d", epochs=1, model=directory), tiny_dataset())
    compiled = train(tiny_config(variant="cloce_d", epochs=1, model=directory, compile=True), tiny_dataset())
    # Dropout draws differ compiled: close, not equal.
    assert compiled.history[0].train_loss == pytest.approx(eager.history[0].train_loss, abs=0.05)
