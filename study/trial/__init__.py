"""The trial process: one Tune trial running cloce's loop in a Ray Train TorchTrainer
(trainable.py), the per-worker loop with its reports and checkpoints (worker.py,
checkpoint_schedule.py, checkpoint_cleanup.py), what a reused process keeps (warm.py), where a
trial's seconds go (phases.py), what a caller may plug into every trial (plugins.py)."""
