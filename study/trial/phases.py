"""Where one trial's seconds go, as its own process sees them: its fixed cost apart from
its training.

A trial's process (reused between trials in local mode) resets the clock when the trial
starts; each phase's time is exclusive (a checkpoint written from inside `train` counts as
"checkpoint", not as "train"), so the phases add up to the trial's wall time. The trial
reports them with its summary (`phase_<name>_s`, `trial_s`); benchmarks/bench_ray.py reads them.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

_totals: dict[str, float] = {}
_stack: list[list[float]] = []  # per open phase: [nested seconds]
_started = time.perf_counter()


def reset() -> None:
    global _started
    _totals.clear()
    _stack.clear()
    _started = time.perf_counter()


@contextmanager
def phase(name: str):
    _stack.append([0.0])
    began = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - began
        nested = _stack.pop()[0]
        _totals[name] = _totals.get(name, 0.0) + elapsed - nested
        if _stack:
            _stack[-1][0] += elapsed


def report() -> dict[str, float]:
    """`trial_s` since reset, each phase's seconds, and `phase_other_s`: what no phase holds
    (Ray Train's set-up around the loop, Tune's reporting)."""
    total = time.perf_counter() - _started
    out = {f"phase_{name}_s": round(seconds, 4) for name, seconds in _totals.items()}
    return out | {"trial_s": round(total, 4), "phase_other_s": round(total - sum(_totals.values()), 4)}
