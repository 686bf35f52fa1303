"""Wait until the job's Ray cluster has N live nodes (deploy/slurm/cloce_study.sbatch).

    python wait_for_nodes.py JOB_DIR/head N [SRUN_PID ...]

JOB_DIR/head is the address file the head's `ray_node.sh` writes ("ip gcs_port
dashboard_port"); the nodes are counted through the head's job API on its loopback, with the
token of RAY_AUTH_TOKEN_PATH. Gives up when a given `srun` (a Ray step) has ended, or after
CLOCE_JOIN_TIMEOUT_S (600) seconds.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(head_file: str, expected: str, *step_pids: str) -> None:
    head, expected_nodes = Path(head_file), int(expected)
    timeout = float(os.environ.get("CLOCE_JOIN_TIMEOUT_S", "600"))
    deadline = time.monotonic() + timeout
    count, last = 0, None
    while time.monotonic() < deadline:
        ended = [pid for pid in map(int, step_pids) if not alive(pid)]
        if ended:
            sys.exit(f"a Ray step ended before its node joined (srun pid {ended}): see the job dir's ray-*.log")
        if head.is_file():
            from ray.util.state import list_nodes

            dashboard = head.read_text().split()[2]
            try:
                nodes = list_nodes(address=f"http://127.0.0.1:{dashboard}", timeout=10, raise_on_missing_output=False)
                count = sum(n.state == "ALIVE" for n in nodes)
                if count >= expected_nodes:
                    print(f"{count} Ray node{'s' if count > 1 else ''} up", flush=True)
                    return
            except Exception as err:  # the head not answering yet
                last = err
        time.sleep(2)
    sys.exit(f"{count} of {expected_nodes} Ray nodes joined in {timeout:.0f} s (last error: {last})")


if __name__ == "__main__":
    main(*sys.argv[1:])
