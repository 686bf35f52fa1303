"""Relation-extraction data: the data model, file readers, data sets and K-shot samples."""
from .dataset import DATA_DIR_ENV, Dataset, default_data_dir, load_dataset
from .readers import FORMATS, OPENNRE, TACRED, detect_format, read_instances, read_records
from .sampling import KShotError, KShotSample, sample_k_shot
from .types import NO_RELATION_NAMES, DataError, EntityMention, LabelMap, RelationInstance

__all__ = [
    "DATA_DIR_ENV",
    "FORMATS",
    "NO_RELATION_NAMES",
    "OPENNRE",
    "TACRED",
    "DataError",
    "Dataset",
    "EntityMention",
    "KShotError",
    "KShotSample",
    "LabelMap",
    "RelationInstance",
    "default_data_dir",
    "detect_format",
    "load_dataset",
    "read_instances",
    "read_records",
    "sample_k_shot",
]
