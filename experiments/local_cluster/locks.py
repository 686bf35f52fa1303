"""The two locks of a cluster, made for one run of it: a Ray auth token and MLflow basic-auth
credentials, each in a file only this user can read (0600, in a 0700 dir). Processes get the
file's *path* (RAY_AUTH_TOKEN_PATH, MLFLOW_AUTH_CONFIG_PATH), never the value on a command line;
the MLflow user's password reaches trials through their nodes' environment
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), never a job's runtime_env (which
`ray job list` shows to anyone holding the token).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SECRETS_DIR = "secrets"


def write_secret(directory: Path, name: str, text: str) -> Path:
    """`text` into directory/name, created 0600 (never readable by others, not even briefly)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(f"{path}: already there; a secret is made once per run (is another cluster "
                              f"using {directory.parent}? give each run a root of its own)") from None
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def new_ray_token(root: str | Path) -> Path:
    """A fresh token (64 hex chars) in ROOT/secrets/ray_auth_token."""
    return write_secret(Path(root) / SECRETS_DIR, "ray_auth_token", secrets.token_hex(32))


def bearer(token_path: str | Path) -> dict[str, str]:
    """The header Ray's dashboard and job server expect (Authorization: Bearer <token>)."""
    return {"Authorization": f"Bearer {Path(token_path).read_text().strip()}"}


@dataclass(frozen=True)
class MlflowLogin:
    """A user of an MLflow basic-auth server (the password stays out of repr and logs)."""

    username: str
    password_path: str

    @property
    def password(self) -> str:
        return Path(self.password_path).read_text()

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}

    def header(self) -> dict[str, str]:
        pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def __repr__(self) -> str:
        return f"MlflowLogin({self.username!r}, password in {self.password_path})"


def mlflow_auth_config(root: str | Path, store: Path) -> tuple[Path, MlflowLogin]:
    """An auth config for `mlflow server --app-name basic-auth` (MLFLOW_AUTH_CONFIG_PATH): its
    user store next to the tracking store, READ on others' experiments for a logged-in user
    (MLflow's default; anyone without credentials gets 401), and the admin's generated password in the file itself
    (0600), not in the server's environment. Returns (config path, the admin's login)."""
    directory = Path(root) / SECRETS_DIR
    admin_password = secrets.token_urlsafe(24)
    admin = MlflowLogin("admin", str(write_secret(directory, "mlflow_admin_password", admin_password)))
    config = write_secret(directory, "mlflow_auth.ini", "\n".join([
        "[mlflow]", "default_permission = READ",
        f"database_uri = sqlite:///{store / 'basic_auth.db'}",
        "admin_username = admin", f"admin_password = {admin_password}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        # MLflow checks the password on every request (scrypt, ~0.1 s of CPU each here) and a
        # study's trials make hundreds: a good login is remembered for 60 s (MLflow's own
        # cache, off by default; a wrong one is never cached). A changed or deleted login
        # is honoured at once on this one-worker server (MLflow invalidates on the API call).
        "auth_cache_ttl_seconds = 60", "",
    ]))
    return config, admin


def mlflow_server_env(config: Path, root: str | Path) -> dict[str, str]:
    """What `mlflow server --app-name basic-auth` needs besides its config: a session secret
    (Flask's), generated once into a 0600 file and handed to the server as the value of
    MLFLOW_FLASK_SERVER_SECRET_KEY in its environment (the server does not read the file)."""
    key_file = Path(root) / SECRETS_DIR / "mlflow_flask_secret"
    if not key_file.exists():
        write_secret(key_file.parent, key_file.name, secrets.token_hex(32))
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": key_file.read_text()}


def new_mlflow_login(root: str | Path, username: str) -> MlflowLogin:
    """A study user's login with a generated password (a 0600 file); create_mlflow_user makes it
    on the server. Apart, so the login can go into a node's environment before the server is up."""
    password_path = write_secret(Path(root) / SECRETS_DIR, f"mlflow_{username}_password", secrets.token_urlsafe(24))
    return MlflowLogin(username, str(password_path))


def create_mlflow_user(tracking_uri: str, admin: MlflowLogin, login: MlflowLogin) -> None:
    """The study user, made by the admin through the REST API; it may create experiments and
    runs (its own: creators get MANAGE on them)."""
    body = json.dumps({"username": login.username, "password": login.password}).encode()
    request = urllib.request.Request(f"{tracking_uri}/api/2.0/mlflow/users/create", data=body, method="POST",
                                     headers={"Content-Type": "application/json"} | admin.header())
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()
