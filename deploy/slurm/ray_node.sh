#!/usr/bin/env bash
# One Ray node of a SLURM job: `srun` runs this on each node of the allocation
# (deploy/slurm/cloce_study.sbatch), as `ray_node.sh head` on the batch node and
# `ray_node.sh worker` on every other one. It picks free ports on its node and then *becomes*
# `ray start --block`, so the step's end is this node's Ray's end: a cancelled or timed-out job,
# or the batch script's cleanup ending the step, takes every Ray process of the node with it
# (`ray start --block` stops its daemons on SIGTERM; never `ray stop`, which would also stop
# every other Ray on a shared node).
#
# From the batch script's environment (srun passes it on): CLOCE_PY, CLOCE_JOB_DIR (on storage
# every node sees: the head writes its address there), RAY_AUTH_MODE=token and
# RAY_AUTH_TOKEN_PATH, PYTHONPATH (the checkout); optional CLOCE_RAY_TMP (local dir for
# Ray's sessions and sockets, /tmp), CLOCE_NODE_CPUS / CLOCE_NODE_GPUS (what this node
# offers; default: the step's CPUs, and the GPUs Ray finds in CUDA_VISIBLE_DEVICES, which
# SLURM sets to the step's), CLOCE_TRIAL_DRIVERS (the head's `trial_driver` units, 100).
set -euo pipefail
role=$1
: "${CLOCE_PY:?}" "${CLOCE_JOB_DIR:?}" "${RAY_AUTH_TOKEN_PATH:?}"
node=${SLURMD_NODENAME:-$(hostname -s)}
temp_dir=${CLOCE_RAY_TMP:-/tmp}/ray-${SLURM_JOB_ID}-${node}
cpus=${CLOCE_NODE_CPUS:-${SLURM_CPUS_ON_NODE:-$(nproc)}}
ray=("$CLOCE_PY" -m ray.scripts.scripts)

# The address Ray itself would pick for this node (the interface that routes out, not
# 127.0.1.1 from /etc/hosts), and free ports for everything Ray would otherwise put on a
# fixed default (6379, 8265, 10001, 52365, ...) that another job on the node may hold; drawn
# below the ephemeral range, where none of the processes Ray starts meanwhile can take them
# (free_ports.py says why).
ip=$("$CLOCE_PY" -c 'from ray._private.services import get_node_ip_address; print(get_node_ip_address())')
read -r gcs dashboard client agent_http agent_grpc env_agent metrics node_manager object_manager \
  < <("$CLOCE_PY" "$(dirname "$0")/free_ports.py" 9)
common=(
  --node-ip-address="$ip" --num-cpus="$cpus" ${CLOCE_NODE_GPUS:+--num-gpus="$CLOCE_NODE_GPUS"}
  --temp-dir="$temp_dir" --labels="cloce-node=$node"
  --dashboard-agent-listen-port="$agent_http" --dashboard-agent-grpc-port="$agent_grpc"
  --runtime-env-agent-port="$env_agent" --metrics-export-port="$metrics"
  --node-manager-port="$node_manager" --object-manager-port="$object_manager"
  --disable-usage-stats --log-style=record --block
)
mkdir -p "$temp_dir"
case $role in
  head)
    # The address file says where the head will be; the batch script waits until it answers.
    echo "$ip $gcs $dashboard" > "$CLOCE_JOB_DIR/head.tmp"
    mv "$CLOCE_JOB_DIR/head.tmp" "$CLOCE_JOB_DIR/head"
    # The job API stays on the head's loopback: the batch script, on this node, is its only
    # client. The GCS port is open to the other nodes, behind the token.
    exec "${ray[@]}" start --head --port="$gcs" --include-dashboard=true \
      --dashboard-host=127.0.0.1 --dashboard-port="$dashboard" --ray-client-server-port="$client" \
      --resources="{\"trial_driver\": ${CLOCE_TRIAL_DRIVERS:-100}}" "${common[@]}"
    ;;
  worker)
    # Started by the batch script once the head is up (its address file written before).
    read -r head_ip head_gcs _ < "$CLOCE_JOB_DIR/head"
    exec "${ray[@]}" start --address="$head_ip:$head_gcs" "${common[@]}"
    ;;
  *) echo "usage: $0 head|worker" >&2; exit 2 ;;
esac
