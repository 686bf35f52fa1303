"""Reporting: from finished trials, the few-shot and per-epoch tables (tables.py), the paired
comparisons (comparisons.py), the plots (plots.py), and every file of a study's tables folder (files.py)."""
