"""Issue 16's parts (experiments/protocol_results.py): each names a valid study with its
overrides, so a typo fails here, not an hour into a background run."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from study.configuration.study_file import load_study_config, parse_override

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "protocol_results.py"
spec = importlib.util.spec_from_file_location("protocol_results", SCRIPT)
protocol = importlib.util.module_from_spec(spec)
sys.modules["protocol_results"] = protocol  # its dataclasses look their module up there
spec.loader.exec_module(protocol)


@pytest.mark.parametrize("name", sorted(protocol.PARTS))
def test_each_part_is_a_valid_study_with_its_overrides(name):
    part = protocol.PARTS[name]
    study = load_study_config(part.experiment, dict(parse_override(s) for s in part.settings))
    command = part.command(None)
    variants = command[command.index("--variants") + 1:command.index("--seeds")] if "--variants" in command else []
    assert set(variants) <= set(study.variants)


def test_the_direction_parts_change_only_what_they_name():
    base = load_study_config("semeval_protocol")
    settings = protocol.PARTS["direction_role_template"].settings
    role = load_study_config("semeval_protocol", dict(parse_override(s) for s in settings))
    assert role.train_config("prompt_ki", 16, 1).template == "role_of"
    assert role.cell_fingerprint("prompt_ki", 16) != base.cell_fingerprint("prompt_ki", 16)
    full_part = protocol.PARTS["semeval_full_cl_lr"]
    full = load_study_config(full_part.experiment, dict(parse_override(s) for s in full_part.settings))
    assert full.default_hyperparams("cloce_d")["cl_lr"] == 1e-6


def test_the_table3_parts_are_valid_studies_on_knowprompts_sets_in_the_papers_row_order():
    from experiments.table3_results import PARTS, ROWS, with_variants

    for part in PARTS.values():
        study = load_study_config(part.experiment)
        assert study.variants == ROWS and study.kshot_sets() == "knowprompt" and study.seeds == (1, 2, 3, 4, 5)
        command = with_variants(part, ["ptr", "knowprompt"]).command(None)
        assert command[command.index("--variants") + 1:command.index("--seeds")] == ["ptr", "knowprompt"]
    # The recorded protocol keeps its sets, so its fingerprints and tables hold.
    assert load_study_config("semeval_protocol").kshot_sets() == "per_label"
