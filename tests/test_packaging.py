"""The Docker image and pyproject.toml agree: same Ray, the default study as CMD, every
package the design needs declared. Static checks (no Docker engine needed)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = REPO / "pyproject.toml"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

from packaging.requirements import Requirement  # noqa: E402  (ray and pip depend on it)
from packaging.specifiers import SpecifierSet  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

REQUIRED_PACKAGES = ("ray", "torch", "transformers", "optuna", "mlflow", "polars", "scipy")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, comments dropped, continuation lines joined."""
    logical, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current)
        current = ""
    if current:
        logical.append(current)
    out = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def build_args() -> dict[str, str]:
    """Defaults of the ARGs (the global ones before FROM included)."""
    args = {}
    for keyword, text in dockerfile_instructions():
        if keyword == "ARG" and "=" in text:
            name, _, value = text.partition("=")
            args[name.strip()] = value.strip().strip('"').strip("'")
    return args


def resolved_from_image() -> str:
    froms = [text for keyword, text in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) == 1, f"expected one FROM, found {froms}"
    image = froms[0].split()[0]
    defaults = build_args()
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), image)


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def requirements() -> dict[str, Requirement]:
    return {canonicalize_name(req.name): req for req in map(Requirement, project()["dependencies"])}


def test_from_is_the_official_ray_image_on_the_pinned_ray_version():
    image = resolved_from_image()
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-(cpu|gpu|cu\d+)", image)
    assert match, f"FROM resolves to {image!r}, expected rayproject/ray:<X.Y.Z>-pyXY-cpu"
    assert match.group(4) == "cpu", "the default build is the CPU image (GPU via --build-arg)"

    ray = requirements()["ray"]
    pins = [spec.version for spec in ray.specifier if spec.operator == "=="]
    assert len(pins) == 1, f"pyproject.toml must pin ray exactly (ray[...]==X), has {ray}"
    assert match.group(1) == pins[0], (
        f"Dockerfile FROM uses Ray {match.group(1)}, pyproject.toml pins ray=={pins[0]}"
    )
    assert {"tune", "train"} <= set(ray.extras), f"the study needs ray[tune,train], pyproject has {ray}"
    assert "default" in ray.extras, f"`ray job submit` needs the job server of ray[default], pyproject has {ray}"

    image_python = f"{match.group(2)}.{match.group(3)}"
    assert SpecifierSet(project()["requires-python"]).contains(image_python), (
        f"the image's Python {image_python} is outside requires-python {project()['requires-python']}"
    )


def test_default_cmd_runs_the_default_study():
    cmds = [text for keyword, text in dockerfile_instructions() if keyword == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    cmd = json.loads(cmds[-1])  # exec form: no shell in between
    assert cmd[0] in ("python", "python3"), cmd
    assert cmd[1] == "study/run_fewshot_grid.py", cmd
    assert (REPO / cmd[1]).is_file()
    assert not [text for keyword, text in dockerfile_instructions() if keyword == "ENTRYPOINT"], (
        "an ENTRYPOINT would change what the CMD runs"
    )
    workdirs = [text for keyword, text in dockerfile_instructions() if keyword == "WORKDIR"]
    copies = [text for keyword, text in dockerfile_instructions() if keyword == "COPY"]
    assert workdirs and any(text.split()[-2:] == [".", "."] for text in copies), (
        "the repository must be copied into WORKDIR, where the CMD's relative path points"
    )


def test_image_installs_torch_then_the_project():
    runs = [text for keyword, text in dockerfile_instructions() if keyword == "RUN"]
    torch_at = next((i for i, text in enumerate(runs) if "pip install" in text and "torch" in text), None)
    project_at = next((i for i, text in enumerate(runs) if re.search(r"pip install[^&]* \.(\s|$)", text)), None)
    assert torch_at is not None, "torch is installed explicitly (CPU wheel index by default)"
    assert project_at is not None, "the project is installed with `pip install .`"
    assert torch_at < project_at, "torch first, else pip resolves torch from PyPI (the CUDA build)"
    assert "download.pytorch.org/whl/cpu" in build_args().get("TORCH_INDEX_URL", ""), build_args()


def test_every_package_the_design_needs_is_a_dependency():
    declared = requirements()
    missing = [name for name in REQUIRED_PACKAGES if name not in declared]
    assert not missing, f"missing from [project].dependencies: {missing}"


def test_dockerignore_keeps_local_results_out_of_the_build_context():
    patterns = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in ("runs", "mlflow.db", "outputs", ".git", "**/__pycache__"):
        assert needed in patterns, f".dockerignore lacks {needed!r}"
    assert "experiments" not in patterns, "the study configs (experiments/) belong in the image"


# ---------------------------------------------------------------- installed anywhere


def test_the_bundled_semeval_is_the_shared_copy_byte_for_byte(tmp_path, monkeypatch):
    """study/datasets/semeval.tar.xz unpacks to exactly ../shared/datasets/semeval's files (and
    the SHA-256s SEMEVAL.md states)."""
    import hashlib

    from cloce.data.dataset import default_data_dir
    from study import datasets

    shared = default_data_dir()
    if not (shared / "train.txt").exists():
        pytest.skip(f"SemEval not found at {shared}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    datasets.bundled_semeval_dir.cache_clear()
    try:
        unpacked = datasets.unpacked_semeval()
        assert unpacked.is_relative_to(tmp_path) and datasets.is_bundled(unpacked)
        stated = (Path(datasets.__file__).parent / "SEMEVAL.md").read_text()
        for name in datasets.FILES:
            data = (unpacked / name).read_bytes()
            assert data == (shared / name).read_bytes(), name
            assert hashlib.sha256(data).hexdigest() in stated, name
        assert datasets.unpacked_semeval() == unpacked  # unpacked once
    finally:
        datasets.bundled_semeval_dir.cache_clear()


def test_a_study_without_data_falls_back_to_the_bundled_copy_only_where_nothing_else_is(tmp_path, monkeypatch):
    from cloce.data import dataset
    from study import datasets
    from study.configuration.study_file import load_study_config
    from study.driver.study_run import with_default_data

    study = load_study_config("quick")
    monkeypatch.delenv(dataset.DATA_DIR_ENV, raising=False)
    if (dataset.default_data_dir() / "train.txt").exists():  # ../shared wins where it exists
        assert with_default_data(study) is study
    monkeypatch.setenv(dataset.DATA_DIR_ENV, str(tmp_path))  # $CLOCE_DATA_DIR wins when given
    assert with_default_data(study) is study
    monkeypatch.delenv(dataset.DATA_DIR_ENV)
    monkeypatch.setattr(dataset, "default_data_dir", lambda: tmp_path / "nowhere")  # a machine without ../shared
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    datasets.bundled_semeval_dir.cache_clear()
    try:
        bundled = with_default_data(study)
        assert datasets.is_bundled(bundled.data_dir) and (Path(bundled.data_dir) / "train.txt").is_file()
        # The bundled files are the default's: the cells keep their fingerprints (results files stay valid).
        labels = dataset.load_dataset(bundled.data_dir).label_map
        assert (bundled.with_label_decisions(labels).cell_fingerprint("prompt_ki", 8)
                == study.with_label_decisions(labels).cell_fingerprint("prompt_ki", 8))
        given = load_study_config("quick", {"study.data_dir": str(tmp_path)})
        assert with_default_data(given) is given  # --data-dir wins
    finally:
        datasets.bundled_semeval_dir.cache_clear()


def test_an_installed_study_takes_the_bundled_copy_over_a_folder_beside_site_packages(tmp_path, monkeypatch):
    """Installed (no checkout around cloce/), a `shared/datasets/semeval` next to site-packages is
    nobody's data set: the study takes its bundled copy."""
    from cloce.data import dataset
    from study import datasets

    site = tmp_path / "venv" / "site-packages"
    monkeypatch.setattr(dataset, "__file__", str(site / "cloce" / "data" / "dataset.py"))
    monkeypatch.delenv(dataset.DATA_DIR_ENV, raising=False)
    decoy = tmp_path / "venv" / "shared" / "datasets" / "semeval"
    decoy.mkdir(parents=True)
    (decoy / "train.txt").write_text("")
    monkeypatch.setattr(datasets, "unpacked_semeval", lambda: tmp_path / "bundled")
    assert datasets.default_study_data_dir() == tmp_path / "bundled"


def test_the_study_files_ship_as_package_data_and_no_script_edits_sys_path():
    from study.configuration.study_file import EXPERIMENTS_DIR, available_experiments

    assert "quick" in available_experiments() and (EXPERIMENTS_DIR / "quick.toml").is_file()
    assert sorted(p.name for p in EXPERIMENTS_DIR.glob("*.toml")) == sorted(
        p.name for p in (REPO / "experiments").glob("*.toml"))
    pyproject = project()
    assert pyproject["scripts"]["cloce-study"] == "study.cli:main"
    data = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    assert "experiments/*.toml" in data["study"] and "semeval.tar.xz" in data["study.datasets"]
    editing = [str(p.relative_to(REPO)) for top in ("cloce", "study", "tests/support", "experiments", "benchmarks") for p in (REPO / top).rglob("*.py")
               if "sys.path.insert" in p.read_text()]
    assert not editing, f"scripts that edit sys.path: {editing}"


@pytest.mark.slow  # builds the wheel (~20 s)
def test_the_wheel_holds_the_study_files_and_the_data_and_no_test_code(tmp_path):
    import subprocess
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=600)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "study/experiments/quick.toml" in names and "study/datasets/semeval.tar.xz" in names
    assert not [n for n in names if n.startswith("study/experiments/") and not n.endswith(".toml")]
    assert not [n for n in names if n.startswith(("tests/", "experiments/", "benchmarks/"))]
    assert not [n for n in names if n.endswith(".py") and "CLOCE_FAULTS" in zipfile.ZipFile(
        next(tmp_path.glob("*.whl"))).read(n).decode()]


def test_only_a_checkout_gives_relative_experiment_paths_and_a_commit_their_root(tmp_path, monkeypatch):
    """From a checkout, an experiment file's relative path is the checkout's and a trial records
    its commit; installed (no checkout around cloce/), the path is the current directory's and
    no commit is recorded, whatever git repository the venv sits in."""
    from cloce import checkout
    from study.configuration.study_config import _from_repo_root
    from study.driver import ledger

    assert checkout.checkout_root() == REPO
    assert _from_repo_root("../shared/datasets/scierc") == str(REPO.parent / "shared" / "datasets" / "scierc")
    monkeypatch.setattr(checkout, "checkout_root", lambda: None)
    monkeypatch.setattr("study.configuration.study_config.checkout_root", lambda: None)
    monkeypatch.setattr(ledger, "checkout_root", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert _from_repo_root("data/scierc") == str(tmp_path / "data" / "scierc")
    ledger.code_version.cache_clear()
    try:
        assert ledger.code_version() is None
    finally:
        ledger.code_version.cache_clear()


def test_a_folder_is_this_projects_checkout_only_with_its_own_pyproject(tmp_path):
    from cloce.checkout import is_this_checkout

    assert is_this_checkout(REPO)
    assert not is_this_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert not is_this_checkout(tmp_path)
