"""CLOCE_FAULTS parsing: what the reliability tests inject (a TrialPlugin they pass to the study),
and what a typo says."""
import pytest

from study.trial.plugins import TrialInfo
from tests.support.faults import Fault, FaultInjector, parse_faults


def test_faults_are_read_with_their_targets():
    faults = parse_faults("kill=finetune:1:2; nan=prompt:*;raise=cloce_s:2")
    assert faults == [Fault("kill", "finetune", "1", 2), Fault("nan", "prompt", "*", 0), Fault("raise", "cloce_s", "2", 0)]
    assert faults[1].applies("prompt", 7) and not faults[2].applies("cloce_s", 1)


@pytest.mark.parametrize("text", ["kill=finetune:1", "explode=prompt:1", "raise=prompt", "nan=:1"])
def test_a_malformed_fault_says_what_is_expected(text):
    with pytest.raises(ValueError, match="kill=VARIANT:SEED:EPOCH"):
        parse_faults(text)


def test_a_raise_fault_raises_only_in_its_trial():
    injector = FaultInjector("raise=cloce_s:2")
    injector.prepare_model(object(), TrialInfo("cloce_s", 1, "t", 0))  # another seed: untouched
    with pytest.raises(RuntimeError, match="injected failure"):
        injector.prepare_model(object(), TrialInfo("cloce_s", 2, "t", 0))


def test_the_study_command_reads_no_faults(monkeypatch):
    """CLOCE_FAULTS is read by tests/support/faulty_study.py only: nothing of the installed package reads it."""
    from pathlib import Path

    import study

    root = Path(study.__file__).parent
    assert not [p for p in root.rglob("*.py") if "CLOCE_FAULTS" in p.read_text()]


def test_a_nan_fault_turns_every_output_tensor_nan():
    """A model may return a tensor or (scores, auxiliary loss or None): each tensor becomes NaN."""
    import torch

    class Pair(torch.nn.Module):
        def forward(self, x):
            return x * 2, None

    trial = TrialInfo("prompt", 1, "t", 0)
    for model in (torch.nn.Linear(2, 2), Pair()):
        FaultInjector("nan=prompt:*").prepare_model(model, trial)
        out = model(torch.ones(1, 2))
        tensors = [t for t in (out if isinstance(out, tuple) else (out,)) if t is not None]
        assert tensors and all(torch.isnan(t).all() for t in tensors)
