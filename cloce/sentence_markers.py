"""Whether a prompt's sentence carries entity markers (`@ head @ ... # tail #`): the
config's choice, else decided by the data's labels (the study decides it the same way
before its trials run, so its fingerprint names what runs)."""
from __future__ import annotations

from cloce.config import TrainConfig
from cloce.data.types import LabelMap
from cloce.metrics import has_directed_labels


def sentence_markers_for(config: TrainConfig, label_map: LabelMap) -> bool:
    """The config's choice, else `markers_by_default`."""
    return config.sentence_markers if config.sentence_markers is not None else markers_by_default(label_map)


def markers_by_default(label_map: LabelMap) -> bool:
    """On exactly for directed labels (SemEval's): there the unmarked sentence leaves the [MASK]
    state to work out which entity is the head (README: what the markers gave)."""
    return has_directed_labels(label_map.labels)
