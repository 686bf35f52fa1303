"""The driver process: a whole study (study_run.py), its (variant, K) cells on Ray Tune, both stages
in one Tuner per cell (cells.py, cell_search.py), the pool of trial slots they share (pool.py), the
results file and resume (ledger.py, tune_state.py), the progress lines (progress.py)."""
