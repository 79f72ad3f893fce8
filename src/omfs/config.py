"""Where a context's settings come from: arguments, then environment, then a config file,
then built-in defaults that work offline with no configuration.

The config file is TOML, at ``$OMFS_CONFIG`` or ``$XDG_CONFIG_HOME/omfs/config.toml``
(``~/.config/omfs/config.toml``)::

    root = "s3://acme-ml/dev"
    bucket = "omega"
    cluster = "tcp://scheduler:8786"

    [storage_options]
    client_kwargs = { endpoint_url = "http://localhost:9000" }

``$OMFS_STORAGE_OPTIONS`` (a JSON object) gives storage options from the environment.
Credentials belong in the environment the storage library reads (``AWS_ACCESS_KEY_ID`` ...).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omfs.errors import ConfigError

__all__ = ["DEFAULT_BUCKET", "Settings", "config_path", "default_root", "resolve"]

DEFAULT_BUCKET = "omega"


def config_path() -> Path:
    """The config file omfs reads (it need not exist)."""
    if os.environ.get("OMFS_CONFIG"):
        return Path(os.environ["OMFS_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "omfs" / "config.toml"


def default_root() -> str:
    """The per-user folder used when nothing else names a root."""
    return str(Path.home() / ".omfs")


@dataclass(frozen=True)
class Settings:
    root: str
    bucket: str
    cluster: Any = None
    storage_options: dict[str, Any] = field(default_factory=dict)


def _read_config() -> dict[str, Any]:
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if os.environ.get("OMFS_CONFIG"):
            raise ConfigError(
                f"OMFS_CONFIG names {str(path)!r}, which does not exist. Create it or unset "
                "OMFS_CONFIG."
            ) from None
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {str(path)!r} is not valid TOML: {exc}") from None
    unknown = set(data) - {"root", "bucket", "cluster", "storage_options"}
    if unknown:
        raise ConfigError(
            f"The config file {str(path)!r} has unknown keys {sorted(unknown)}; allowed are "
            "root, bucket, cluster and [storage_options]."
        )
    return data


def resolve(
    root: str | os.PathLike[str] | None = None,
    bucket: str | None = None,
    cluster: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> Settings:
    """Fill in each setting from the argument, ``$OMFS_*``, the config file or the default."""
    env = os.environ
    needs_file = (
        (root is None and not env.get("OMFS_ROOT"))
        or (bucket is None and not env.get("OMFS_BUCKET"))
        or (cluster is None and not env.get("OMFS_CLUSTER"))
    )
    conf = _read_config() if needs_file else {}
    chosen_root = os.fspath(root) if root is not None else env.get("OMFS_ROOT") or conf.get("root")
    options = storage_options
    if options is None and env.get("OMFS_STORAGE_OPTIONS"):
        try:
            options = json.loads(env["OMFS_STORAGE_OPTIONS"])
        except ValueError as exc:
            raise ConfigError(f"$OMFS_STORAGE_OPTIONS is not valid JSON: {exc}") from None
        if not isinstance(options, dict):
            raise ConfigError("$OMFS_STORAGE_OPTIONS must be a JSON object")
    if options is None:
        # the file's storage options belong to the file's root only
        options = conf.get("storage_options", {}) if chosen_root == conf.get("root") else {}
    return Settings(
        root=chosen_root or default_root(),
        bucket=bucket or env.get("OMFS_BUCKET") or conf.get("bucket") or DEFAULT_BUCKET,
        cluster=cluster if cluster is not None else env.get("OMFS_CLUSTER") or conf.get("cluster"),
        storage_options=dict(options),
    )
