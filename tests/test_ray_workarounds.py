"""Each patch of a Ray internal in study/ray_workarounds.py fails a test here when a Ray upgrade
moves what it patches (the actor cache's: tests/test_study_pool.py,
test_under_a_slot_limit_tune_keeps_a_trial_process_only_for_its_cells_held_slot)."""
from __future__ import annotations

import inspect
import threading


def test_the_lean_trainer_drops_the_callbacks_a_cloce_trial_never_uses():
    """Ray Train V2's `_create_default_callbacks` and the two internal callbacks it builds: if any
    moves, lean_trainer_class would silently fall back to the stock trainer."""
    from ray.train.torch import TorchTrainer
    # The import is the check: it fails where a Ray upgrade moves the callbacks lean_trainer_class drops.
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback  # noqa: F401
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback  # noqa: F401

    from study.ray_workarounds import lean_trainer_class

    assert hasattr(TorchTrainer, "_create_default_callbacks")
    source = inspect.getsource(TorchTrainer._create_default_callbacks)
    assert "DatasetsCallback" in source and "PlacementGroupCleanerCallback" in source
    for local_runtime in (True, False):
        lean = lean_trainer_class(local_runtime)
        assert lean is not TorchTrainer and issubclass(lean, TorchTrainer)
        assert "_create_default_callbacks" in vars(lean)


def test_cells_register_their_trainables_one_at_a_time():
    """Tune's trainable registry is process-wide (`tune.register_trainable` -> `_global_registry`)."""
    from ray import tune
    from ray.tune import registry

    from study.ray_workarounds import register_cell_trainable

    assert hasattr(registry, "_global_registry") and callable(tune.register_trainable)
    names = []
    threads = [threading.Thread(target=lambda i=i: names.append(register_cell_trainable(f"cloce_test_{i}", lambda c: None)))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == [f"cloce_test_{i}" for i in range(4)]
    # Each name is in Tune's own registry, where a Tuner looks it up.
    assert all(registry._global_registry.contains(registry.TRAINABLE_CLASS, name) for name in names)


def test_a_registry_hands_back_the_live_object():
    from study.ray_workarounds import Registry

    registry = Registry("things")
    thing = object()
    assert registry.put("a", thing) is thing and registry.get("a") is thing
    assert registry.get_or_put("a", object()) is thing and registry.get("b") is None


def test_an_idle_controller_waits_longer_for_its_next_event_and_only_then():
    """TuneController builds its actor manager by the name `RayActorManager` in its module, and
    its loop (`step`) waits on it with timeout=0.1: if either moves, patient_controller_loops
    would silently patch nothing."""
    from ray.tune.execution import tune_controller

    from study.ray_workarounds import patient_actor_manager, patient_controller_loops

    assert "RayActorManager(" in inspect.getsource(tune_controller.TuneController.__init__)
    assert "self._actor_manager.next(timeout=0.1)" in inspect.getsource(tune_controller.TuneController.step)
    stock = tune_controller.RayActorManager
    with patient_controller_loops(1.0):
        assert tune_controller.RayActorManager is not stock and issubclass(tune_controller.RayActorManager, stock)
    assert tune_controller.RayActorManager is stock
    with patient_controller_loops(0.1):  # Tune's own wait: nothing patched
        assert tune_controller.RayActorManager is stock

    class Manager:
        def next(self, timeout=None):
            return timeout

    patient = patient_actor_manager(Manager, 1.0)()
    # The idle loop's 0.1 s becomes 1 s; a longer wait, "block until an event" and a poll stay as asked.
    assert (patient.next(timeout=0.1), patient.next(timeout=5), patient.next(), patient.next(timeout=0)) == (1.0, 5, None, 0)
