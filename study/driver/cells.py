"""The study's two stages, one Ray Tune run per (variant, K) cell; every cell at once
(study/driver/pool.py says how the cells share the cluster, and why one Tuner per cell;
study/driver/cell_search.py why both stages share it).

Stage 1 (search): `OptunaSearch` (TPE) over lr, contrastive lr and margin on the search
seed; objective = best val micro-F1. Optuna refuses grid_search, so variant and K are
cells here, not searched dimensions.
Stage 2 (final): the cell's best config on every seed, suggested the moment the last search
trial has ended; test F1 at the best val epoch. Test F1 never steers anything.

Each finished cell is written to `<study dir>/cells/<cell>.json`; `--resume` skips those
cells and restores an interrupted one with `Tuner.restore`.
"""
from __future__ import annotations

import json
import os
import re
import traceback
from dataclasses import replace
from pathlib import Path

from study.tracking import runs as tracking
from study.trial.checkpoint_cleanup import discard_finished_checkpoints
from study.driver.tune_state import has_saved_state, set_aside, unreadable_tune_state
from study.configuration.study_config import CONTRASTIVE_VARIANTS, LOG_UNIFORM, StudyConfig
from study.driver.cell_search import (
    MODE, OBJECTIVE, CellSearcher, CellSearchSync, SearchOnlyASHA, best_record, config_key, fixed_config,
    register_publisher, search_failed, stands_as_final,
)
from study.driver.ledger import LedgerWriter, TrialLedger
from study.driver.pool import CellLimiter, CellRunner, register_slots
from study.ray_workarounds import (
    cell_of_this_thread, handed_over_trial_actors, patient_controller_loops, register_cell_trainable,
)
from study.trial.trainable import TrialContext, run_trial, trial_record


def cell_name(stage: str, variant: str, k: int) -> str:
    return f"{stage}-{variant}-K{k}"


def search_space(study: StudyConfig, variant: str) -> dict:
    from ray import tune

    params = {"seed": study.search.search_seed} | study.fixed_hyperparams(variant)
    for name, span in study.searched(variant).items():
        if name == "lr" or variant in CONTRASTIVE_VARIANTS:
            params[name] = tune.loguniform(*span) if name in LOG_UNIFORM else tune.uniform(*span)
    return params


def trial_resources(study: StudyConfig) -> dict:
    """In local mode the trial trains in its own process and holds one worker's CPUs/GPU.
    Otherwise it only waits on its TorchTrainer, whose workers hold them: locally it reserves
    one unit of the `trial_driver` resource start_ray declares (Tune refuses a request of
    nothing); on a cluster without it, a hundredth of a CPU."""
    import ray

    resources = study.resources
    if resources.workers_per_trial == 0:
        return {"CPU": resources.cpus_per_worker} | ({"GPU": resources.gpus_per_worker} if resources.use_gpu else {})
    return {"CPU": 0, "trial_driver": 1} if "trial_driver" in ray.cluster_resources() else {"CPU": 0.01}


def asha_scheduler(epochs: int, grace_period: int):
    """Stops weak search trials at its rungs on `epochs_done` (not training_iteration, which
    restarts at 1 after a restore); final trials always run on. A trial's summary (test F1) is
    reported just after its last epoch: with stop_last_trials ASHA would stop the trial at
    max_t before that report arrives."""
    return SearchOnlyASHA(metric=OBJECTIVE, mode=MODE, time_attr="epochs_done", max_t=epochs,
                         grace_period=grace_period, stop_last_trials=False)


def run_cell(context: TrialContext, tune_dir: str, param_space: dict, tune_config, resume: bool, callbacks):
    """One Tuner for one cell; restored when an earlier run of it was interrupted."""
    from ray import tune

    name = cell_name("cell", context.variant, context.k)
    path = os.path.join(tune_dir, name)
    trainable = register_cell_trainable(
        re.sub(r"[^A-Za-z0-9_]", "_", f"cloce_{name}"),
        tune.with_resources(tune.with_parameters(context.trial_function or run_trial, context=context), trial_resources(context.study)))
    # Whoever runs the loop retries it from its last checkpoint: Ray Train its workers, Tune
    # a local-mode trial (the loop runs in the trial's own process).
    local_mode = context.study.resources.workers_per_trial == 0
    max_failures = context.study.resources.max_failures if local_mode else 0
    tuner = None
    restorable = resume and tune.Tuner.can_restore(path)
    unsaved = restorable and not has_saved_state(path)
    unreadable = unreadable_tune_state(path) if restorable and not unsaved else None
    if unsaved:
        print(f"[resume] {name}: the driver was killed before Tune first saved this cell's state; "
              "the cell starts again, its finished trials too unless the study has a results file", flush=True)
    elif unreadable:
        aside = set_aside(path)
        print(f"[resume] {name}: Tune's saved state is unreadable ({unreadable}; the driver was killed while "
              f"writing it): set aside as {aside.name}; the cell starts again, its finished trials too "
              "unless the study has a results file", flush=True)
    elif restorable:
        try:
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=False, restart_errored=False)
        except Exception as err:  # killed before its first trial was saved: start the cell afresh
            print(f"[resume] {name}: cannot restore ({err}); starting this cell again", flush=True)
    if tuner is None:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune_config,
            run_config=tune.RunConfig(
                name=name, storage_path=tune_dir, verbose=0,
                # A list of its own: Tune appends its loggers (open files) to the list it is given.
                callbacks=list(callbacks),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                # Only the latest checkpoint is ever resumed from. Keeping every epoch's (weights +
                # optimiser state, 260 MiB for MiniLM: benchmarks/readings.md, 5/5c) filled a 252 GB disk after ~30 trials.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
    # The controller fit() builds here finds its cell's held slots by this name (study/ray_workarounds.py).
    with cell_of_this_thread(getattr(tune_config.search_alg, "publisher", "")):
        grid = tuner.fit()
    # Their records are written: the finished trials' checkpoints would only fill the disk.
    discard_finished_checkpoints(grid)
    tracking.close_stopped_runs(context.tracking_uri, context.experiment_id, context.parent_run_id,
                                context.variant, context.k)
    return grid


def records_of(grid, variant: str, k: int) -> list[dict]:
    rows = []
    for result in grid:
        error = None if result.error is None else str(result.error).splitlines()[0][:500]
        config = result.config or {}
        rows.append(trial_record(result.metrics or {}, config, variant, k, config.get("stage", "search"), error))
    return rows


def inherited_params(study: StudyConfig, variant: str, k: int, runner: CellRunner) -> dict:
    """The hyper-parameters a cell takes from another cell's search (spaces.<variant>.lr =
    "<source>"): it waits for that search to choose, and fails if that search failed."""
    source = study.search_space(variant).lr_from
    if not source or not study.search.enabled:
        return {}
    try:
        chosen = runner.wait_for((source, k))
    except Exception as err:
        raise RuntimeError(f"{variant} K={k} takes its lr from {source} (spaces.{variant}.lr), "
                           f"whose K={k} search failed: {err}") from None
    return {"lr": chosen["lr"]}


def cell_limit(study: StudyConfig, trials: int) -> int:
    """Trials of one cell's stage at a time: search.max_concurrent_trials, 0 = all of them."""
    return max(1, min(study.search.max_concurrent_trials or trials, trials))


def run_cell_stages(study: StudyConfig, context: TrialContext, tune_dir: str, resume: bool, callbacks,
                    ledger: TrialLedger | None = None, fixed: dict | None = None, slots: str = "",
                    publisher: str = "") -> tuple[dict, list[dict], list[dict]]:
    """Both stages of one cell in one Tuner (study/driver/cell_search.py says why): (the chosen
    hyper-parameters, the search's records, the final records). Trials already in the ledger
    are told to Optuna as evaluated, or stand as final runs; only the rest run. The search
    seed's run of the chosen config stands as that seed's final run when it trained every
    epoch: same config, same seed, same numbers."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    fixed = fixed or {}
    variant, k = context.variant, context.k
    fingerprint = study.cell_fingerprint(variant, k)
    done = ledger.of("search", variant, k, fingerprint) if ledger else []
    # Searched under another inherited value (the source cell chose again): not this search's.
    done = [r for r in done if all(r["config"].get(name) == value for name, value in fixed.items())]
    finals = ledger.of("final", variant, k, fingerprint) if ledger else []
    searching = study.search.enabled and bool(study.searched(variant)) and len(done) < study.search.num_samples
    trials = study.search.num_samples - len(done) if searching else 0
    if not study.search.enabled or not study.searched(variant):  # nothing to search: seeds only
        constants, param_space, done = study.default_hyperparams(variant) | fixed, {}, []
    else:
        space = search_space(study, variant) | fixed
        constants = {name: value for name, value in space.items() if not isinstance(value, tune.search.sample.Domain)}
        # A search the results file already holds in full: the searcher suggests final seeds only.
        param_space = space if searching else {}
    search = None
    if searching:
        # The cell's own seeded sampler: what it chooses does not depend on the cells beside it.
        # A resumed search continues with another seed: the first seed's random start-up
        # points would be the ones already evaluated.
        search = OptunaSearch(metric=OBJECTIVE, mode=MODE, seed=study.search.search_seed + 1000 * len(done),
                              points_to_evaluate=[{n: v for n, v in r["config"].items() if n not in constants}
                                                  for r in done] or None,
                              evaluated_rewards=[r["val_micro_f1"] for r in done] or None)
    epochs = study.train_config(variant, k, study.search.search_seed).epochs
    finals_done: dict[str, list[int]] = {}
    for record in finals:
        if record["seed"] in study.seeds:
            finals_done.setdefault(config_key(record["config"]), []).append(record["seed"])
    searcher = CellSearcher(search, trials, constants, done, list(study.seeds), epochs, finals_done, variant, k,
                            publisher)
    scheduler = asha_scheduler(epochs, study.search.grace_period) if study.search.asha and searching else None
    # More than it needs: the searcher ends the Tuner itself (FINISHED), and a restored one may
    # suggest a trial again whose first suggestion was never saved (CellSearcher.reconcile).
    runs = trials + len(searcher.pending_seeds if searcher.pending_seeds is not None else study.seeds)
    runs = 2 * runs if runs else 0
    callbacks = [*callbacks, CellSearchSync(publisher)]
    if ledger:
        callbacks.append(LedgerWriter(ledger, variant, k, fingerprint))
    records = []
    if runs:
        tune_config = tune.TuneConfig(
            search_alg=CellLimiter(searcher, cell_limit(study, max(trials, len(study.seeds))), slots,
                                   hands_over=scheduler is None),
            scheduler=scheduler,
            num_samples=runs,
            # One process for the cell's trials, search and final, not one per trial; but a trial
            # ASHA stops must lose its process: that ends its TorchTrainer (owned by it), which
            # would otherwise retry the interrupted run and hold its CPUs while the next trials wait.
            reuse_actors=scheduler is None,
        )
        grid = run_cell(context, tune_dir, param_space, tune_config, resume, callbacks)
        records = records_of(grid, variant, k)
    searched = done + [r for r in records if r["stage"] == "search"]
    best = best_record(searched)
    if searched and best is None:
        raise search_failed(variant, k)
    chosen = best["config"] if best else fixed_config(constants)
    final = [r | {"stage": "final", "reused_from_search": True} for r in ([best] if best else [])
             if stands_as_final(r, study.seeds, epochs)]
    final += [r for r in finals if r["config"] == chosen and r["seed"] in study.seeds
              and r["seed"] not in {u["seed"] for u in final}]
    final += [r for r in records if r["stage"] == "final"]
    return chosen, searched, final


def run_study_cells(study: StudyConfig, base: TrialContext, study_dir: Path, resume: bool, callbacks,
                    ledger: TrialLedger | None = None) -> list[dict]:
    """Both stages for every (variant, K) cell, all cells at once (resources.cells_in_parallel);
    returns every final record, in the cells' order (the tables' input). With a ledger, it
    decides what is left to run: Ray's own state is not restored."""
    resume = resume and ledger is None
    cells_dir = study_dir / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    tune_dir = str((study_dir / "tune").resolve()) if "://" not in str(study_dir) else str(study_dir / "tune")
    slots = f"study:{tune_dir}"
    register_slots(slots, study.resources.max_running_trials)
    runner = CellRunner([(variant, k) for variant in study.variants for k in study.ks],
                        in_parallel=study.resources.cells_in_parallel)

    def run_one_cell(cell: tuple[str, int]) -> list[dict]:
        variant, k = cell
        cell_file = cells_dir / f"{variant}-K{k}.json"
        if resume and cell_file.exists():
            done = json.loads(cell_file.read_text())
            runner.publish(cell, done["best_config"])
            print(f"[resume] {variant} K={k}: already finished, not re-run", flush=True)
            return done["final"]
        publisher = f"{tune_dir}:{variant}-K{k}"
        # The cell's searcher publishes its choice the moment its search ends, mid-Tuner.
        register_publisher(publisher, lambda best, error: runner.publish(cell, best, error))
        try:
            fixed = inherited_params(study, variant, k, runner)
            best, searched, final = run_cell_stages(study, replace(base, stage="search", variant=variant, k=k),
                                                    tune_dir, resume, callbacks, ledger, fixed, slots, publisher)
            runner.publish(cell, best)
        except Exception as err:  # a failed cell never takes the study down; --resume retries it
            runner.publish(cell, None, err)
            print(f"[error] {variant} K={k}: {err}\n{traceback.format_exc()}", flush=True)
            return [trial_record({}, {"seed": s}, variant, k, "final", error=str(err)[:500]) for s in study.seeds]
        cell_file.write_text(json.dumps({"best_config": best, "search": searched, "final": final}, indent=1))
        tracking.log_json(base.tracking_uri, base.parent_run_id, {"best_config": best}, f"chosen_configs/{variant}-K{k}.json")
        return final

    # A slot limit needs Tune to keep a trial process only for its cell's next trial
    # (handed_over_actor_cache says why); one Tuner per cell needs its idle loop to be quiet
    # (patient_actor_manager says why).
    with handed_over_trial_actors(study.resources.max_running_trials > 0), patient_controller_loops():
        return runner.run(run_one_cell)
