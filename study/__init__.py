"""Few-shot studies of CLoCE on Ray Tune/Train, Optuna and MLflow."""
