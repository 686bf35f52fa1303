"""The scale benchmark's stand-in trial (benchmarks/scale_standin.py) plugs into the study
through TrialContext.trial_function, and a trial process that receives it imports no torch:
that is what lets 64 of them share 2 cores."""
import pickle
import subprocess
import sys
from pathlib import Path

from benchmarks.scale_standin import plausible_f1, standin_trial
from benchmarks.scale_standin import test_labels as drawn_test_labels
from study.configuration.study_file import load_study_config
from study.trial.trainable import TrialContext

REPO = Path(__file__).resolve().parents[1]


def test_a_trial_process_unpickling_the_standin_context_imports_no_torch(tmp_path):
    context = TrialContext(load_study_config("quick", {}), "search", "finetune", 8, str(tmp_path), "sqlite:///x.db",
                           "0", "p", trial_function=standin_trial)
    blob = tmp_path / "context.pkl"
    blob.write_bytes(pickle.dumps(context))
    # What a Tune trial process does first: unpickle its bound parameters, then run the function.
    script = ("import pickle, sys; c = pickle.load(open(sys.argv[1], 'rb')); import study.driver.cells; "
              "print(c.trial_function.__module__, 'torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, str(blob)], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["benchmarks.scale_standin", "False", "False"]


def test_the_study_command_plugs_in_no_trial_function():
    assert TrialContext(None, "search", "v", 1, "", "", "", "").trial_function is None


def test_the_standin_draws_plausible_numbers():
    import random

    rng = random.Random(0)
    near, far = plausible_f1({"lr": 2e-4}, 2, 2, rng), plausible_f1({"lr": 2e-6}, 2, 2, rng)
    assert 0 <= far < near <= 1
    labels = drawn_test_labels(0.6, rng)
    assert len(labels["gold"]) == len(labels["pred"]) and labels["no_relation_id"] == 0
