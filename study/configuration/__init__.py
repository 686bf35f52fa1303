"""Configuration: a study file (TOML under experiments/, shipped with the package) plus command-line
overrides, validated once into a typed `StudyConfig` (study_config.py: the dataclasses; study_file.py:
reading and checking a file; toml_values.py: a TOML value against its type hint, the problem lines)."""
