"""The locks' files (experiments/local_cluster/locks.py), read as MLflow's basic-auth app reads them."""
from __future__ import annotations

from experiments.local_cluster.locks import mlflow_auth_config


def test_the_auth_config_is_private_and_mlflow_reads_its_login_cache(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    config, admin = mlflow_auth_config(tmp_path, tmp_path / "store")
    assert config.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(config))
    read = read_auth_config()
    assert (read.admin_username, read.admin_password) == ("admin", admin.password)
    assert read.default_permission == "READ"
    # Without the cache every request pays a scrypt check: should MLflow rename the option,
    # this fails instead of the locked tests quietly slowing down again.
    assert read.auth_cache_ttl_seconds == 60
