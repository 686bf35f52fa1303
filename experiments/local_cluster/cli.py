"""The command line of the local cluster recipe: start the cluster (experiments/local_cluster/cluster.py),
run the study with its faults and checks on it (experiments/local_cluster/chaos_study.py, on the tiny inputs of
tests/support/tiny_inputs.py), print what was measured, stop it.

    python -m experiments.local_cluster demo           # start -> submit -> faults -> checks -> stop
    python -m experiments.local_cluster start          # start it and print its addresses (stays up)
    python -m experiments.local_cluster stop --root R  # stop what `start` started in R
    experiments/local_cluster.sh ...                 # the same
"""
from __future__ import annotations

import argparse
import json

from experiments.local_cluster import cluster as local_cluster
from experiments.local_cluster.chaos_study import StudyPlan, problems, run_chaos_study
from experiments.local_cluster.cluster import LocalCluster
from tests.support.tiny_inputs import make_semeval_slice, make_tiny_model


def main(argv: list[str] | None = None) -> int:
    # The usage above, then what runs and how it is stopped (the cluster module's docstring).
    parser = argparse.ArgumentParser(description=f"{__doc__}\n{local_cluster.__doc__}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="demo", choices=["demo", "start", "stop", "state"])
    parser.add_argument("--root", help="directory for every node's temp dir and the shared storage "
                        "(default: a new /tmp/lcl_*; keep it short, Ray's sockets live under it)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=int, default=2)
    parser.add_argument("--model", help="backbone dir/id (default: a tiny random BERT made under ROOT/shared)")
    parser.add_argument("--data-dir", help="SemEval dir to slice (default: ../shared/datasets/semeval)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--slow", type=float, default=3.0, help="seconds added to every epoch (CLOCE_FAULTS slow=)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the tracking server is down")
    parser.add_argument("--no-faults", action="store_true", help="no node kill, no tracking server restart")
    parser.add_argument("--keep", action="store_true", help="demo: leave the cluster running at the end")
    args = parser.parse_args(argv)

    if args.command in ("stop", "state") and not args.root:
        parser.error(f"{args.command} needs --root (printed by start)")
    if args.command == "stop":
        cluster = LocalCluster.load(args.root)
        survivors = cluster.stop()
        cluster.save()
        print(f"stopped {', '.join(cluster.nodes)}" + (f"; survivors: {survivors}" if survivors else ""))
        return 1 if survivors else 0
    if args.command == "state":
        print(json.dumps(LocalCluster.load(args.root).ray_state(), indent=1))
        return 0

    cluster = LocalCluster.start(args.root, args.workers, args.cpus_per_worker)
    print(f"root             {cluster.root}\nRAY_ADDRESS      {cluster.dashboard_url}   (ray job submit --address)\n"
          f"GCS              {cluster.gcs_address}   (ray.init(address=...))\n"
          f"MLflow           {cluster.tracking_uri}\nshared storage   {cluster.shared}\n"
          f"Ray token        {cluster.token_path}   (mode 0600; a client needs\n"
          f"                 RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.token_path})", flush=True)
    if args.command == "start":
        print(f"stop it with: python -m experiments.local_cluster stop --root {cluster.root}")
        return 0
    code = 1
    try:
        model = args.model or make_tiny_model(cluster.shared / "tiny_bert")
        data = make_semeval_slice(cluster.shared / "semeval", args.data_dir)
        plan = StudyPlan(model=model, data_dir=data, epochs=args.epochs, slow_s=args.slow)
        report = run_chaos_study(cluster, plan, faults=not args.no_faults, outage_s=args.outage)
        found = problems(report, plan, faults=not args.no_faults)
        print_report(report)
        print("\nchecks: " + ("all passed" if not found else "FAILED\n  " + "\n  ".join(found)))
        print(f"report: {cluster.root}/report.json; job log: {cluster.root}/job.log")
        code = 0 if not found else 1
    finally:
        if not args.keep:
            survivors = cluster.stop()
            print("cluster stopped" + (f"; survivors: {survivors}" if survivors else " (no process left)"))
        else:
            cluster.save()
            print(f"left running: python -m experiments.local_cluster stop --root {cluster.root}")
    return code


def print_report(report: dict) -> None:
    print(f"\njob {report['job_id']}: {report['job_status']} in {report['study_seconds']} s")
    print(f"MLflow: {report['parents']} parent run ({report['parent_status']}), {report['child_runs']} child runs, "
          f"{report['unique_trial_keys']} trial keys (expected {report['expected_trials']})")
    print(f"trials first trained on: {report['trials_first_trained_on']}; attempts per node: {report['attempts_per_node']}")
    for key, trial in sorted(report["trials"].items()):
        print(f"  {key:34s} {trial['status']:9s} node {trial['node']} device {trial['device']} "
              f"placements {trial['placements']} val steps {trial['val_steps']}")
    print(f"killed node: {report['victim']} (chosen with trial {report.get('victim_trial')} running); "
          f"its trials moved: {sorted(report['moved_trials'])}")
    print(f"tracking server outage: {report['val_points_logged_during_outage']} val_micro_f1 points measured while it "
          f"was down arrived later; {report['tracking_retries_recovered']} MLflow calls (at least) recovered after retries")
    print(f"parent artifacts: {report['parent_artifacts']}")
    print(f"placement groups after the study: {report['placement_groups']}; resources held: {report['resources_held']}; "
          f"alive nodes: {report['alive_nodes']}")

