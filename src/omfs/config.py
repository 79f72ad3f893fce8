"""Where a context's settings come from: arguments, then environment, then a config file,
then built-in defaults that work offline with no configuration.

The config file is TOML, at ``$OMFS_CONFIG`` or ``config.toml`` in the user's config
folder (on Linux ``$XDG_CONFIG_HOME/omfs/config.toml``, ``~/.config/omfs/config.toml``).
It names contexts, one of them the default::

    default = "dev"

    [contexts.dev]
    root = "~/omfs-dev"

    [contexts.prod]
    root = "s3://acme-ml/prod"
    cluster = "tcp://sched:8786"
    storage_options = { client_kwargs = { endpoint_url = "http://minio:9000" } }

A file of the first release (top-level ``root``, ``bucket``, ``cluster`` and
``[storage_options]``) still works: it is the context used when no named one is chosen.

``$OMFS_STORAGE_OPTIONS`` (a JSON object) gives storage options from the environment.
Credentials belong in the environment the storage library reads (``AWS_ACCESS_KEY_ID`` ...)
or its own credentials file (an AWS profile); storage options kept in the config file are
plain text, so omfs writes the file with mode 0600 (its folder, when omfs creates it, 0700).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from omfs._util import TooDeepError, atomic_write, depth_problem, parse_bounded
from omfs.errors import ConfigError

__all__ = [
    "DEFAULT_BUCKET",
    "Settings",
    "add_context",
    "config_path",
    "contexts",
    "default_root",
    "remote",
    "remove_context",
    "resolve",
    "secret_options",
]

DEFAULT_BUCKET = "omega"


def config_path() -> Path:
    """The config file omfs reads (it need not exist): ``$OMFS_CONFIG``, else
    ``config.toml`` in the user's config folder (platformdirs; on Linux
    ``$XDG_CONFIG_HOME/omfs``, i.e. ``~/.config/omfs``)."""
    if os.environ.get("OMFS_CONFIG"):
        return Path(os.environ["OMFS_CONFIG"]).expanduser()
    folder: Path = platformdirs.user_config_path("omfs", appauthor=False)
    return folder / "config.toml"


def default_root() -> str:
    """The per-user folder used when nothing else names a root."""
    return str(Path.home() / ".omfs")


_CONTEXT_KEYS = {"root", "bucket", "cluster", "storage_options"}
_TOP_KEYS = _CONTEXT_KEYS | {"default", "remote", "contexts"}
#: a context name: short, ASCII, identifier-like (it is typed after --context)
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Settings:
    root: str
    bucket: str
    cluster: Any = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    context: str | None = None  # the named context these came from, if any
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where it came from


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
        data = parse_bounded(tomllib.loads, text)
    except TooDeepError as exc:
        raise ConfigError(f"The config file {str(path)!r} cannot be used: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {str(path)!r} is not valid TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"The config file {str(path)!r} has unknown keys {sorted(unknown)}; allowed are "
            "default, remote, [contexts.NAME], and root, bucket, cluster, [storage_options]."
        )
    named = data.get("contexts", {})
    if not isinstance(named, dict):
        raise ConfigError(f"In {str(path)!r}, 'contexts' must be a table of [contexts.NAME]")
    _check_settings(path, "the top level", data)
    for name, ctx in named.items():
        if not _CONTEXT_NAME.fullmatch(name):
            raise ConfigError(f"In {str(path)!r}, {_bad_context_name(name)}")
        if not isinstance(ctx, dict) or not isinstance(ctx.get("root"), str):
            raise ConfigError(
                f'In {str(path)!r}, [contexts.{name}] needs a root, e.g. root = "~/omfs-dev"'
            )
        extra = set(ctx) - _CONTEXT_KEYS
        if extra:
            raise ConfigError(
                f"In {str(path)!r}, [contexts.{name}] has unknown keys {sorted(extra)}; allowed "
                "are root, bucket, cluster and storage_options."
            )
        _check_settings(path, f"[contexts.{name}]", ctx)
    for key in ("default", "remote"):
        if key in data and data[key] not in named:
            raise ConfigError(
                f"In {str(path)!r}, {key} = {data[key]!r} names no context; known: {sorted(named)}"
            )
    return data


def _check_settings(path: Path, where: str, table: dict[str, Any]) -> None:
    """Refuse settings of the wrong type, naming the table and the key (a string
    ``storage_options`` would otherwise fail deep inside the storage library)."""
    for key in ("root", "bucket", "cluster"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(
                f'In {str(path)!r}, {where} {key} must be a string, e.g. {key} = "..."; got '
                f"{type(table[key]).__name__} {table[key]!r}"
            )
    options = table.get("storage_options")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(
            f"In {str(path)!r}, {where} storage_options must be a table, e.g. storage_options "
            f"= {{ anon = true }} or [contexts.NAME.storage_options]; got "
            f"{type(options).__name__} {options!r}"
        )


def contexts() -> dict[str, dict[str, Any]]:
    """The named contexts of the config file (``{}`` without one), and which is the default
    and which the remote: ``{name: {"root", "bucket", "cluster", "storage_options",
    "default": bool, "remote": bool}}``."""
    conf = _read_config()
    default, remote = conf.get("default"), conf.get("remote")
    return {
        name: {**ctx, "default": name == default, "remote": name == remote}
        for name, ctx in sorted(conf.get("contexts", {}).items())
    }


def remote() -> str | None:
    """The config file's ``remote`` context (what ``om push`` and ``om pull`` sync with)."""
    value = _read_config().get("remote")
    return value if isinstance(value, str) else None


#: what a context name may be, as the messages say it
_CONTEXT_RULE = (
    "not a simple name: use up to 64 ASCII letters, digits, '_', '-' and '.', starting "
    "with a letter or digit (e.g. prod, team-eu)"
)


def _bad_context_name(name: object) -> str:
    return f"the context name {name!r} is {_CONTEXT_RULE}"


def _check_context_name(name: object) -> str:
    if not isinstance(name, str) or not _CONTEXT_NAME.fullmatch(name):
        raise ConfigError(f"Invalid context name {name!r}: {_CONTEXT_RULE}")
    return name


def secret_options(options: dict[str, Any]) -> list[str]:
    """The (dotted) keys of ``options`` that may hold credentials: every key outside the
    allow-list of options known to be safe to show (``key``, ``secret``, ``token``,
    ``password``, ``sas_token``, ``connection_string`` ...)."""
    from omfs.storage import public_options

    def walk(given: dict[str, Any], public: dict[str, Any], prefix: str) -> list[str]:
        found = []
        for key, value in given.items():
            if key not in public:
                found.append(prefix + key)
            elif isinstance(value, dict):
                found += walk(value, public[key], f"{prefix}{key}.")
        return found

    return walk(options, public_options(options), "")


def _write_config(data: dict[str, Any]) -> Path:
    """Replace the config file whole, readable by its owner only (0600; a folder that omfs
    creates for it, 0700): it may hold storage credentials. The mode is set on a fresh
    temporary file before it is renamed into place, so no reader ever sees it wider."""
    import tomli_w

    path = config_path()
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, tomli_w.dumps(data).encode("utf-8"), mode=0o600, durable=True)
    return path


def add_context(
    name: str,
    root: str,
    *,
    bucket: str | None = None,
    cluster: str | None = None,
    storage_options: dict[str, Any] | None = None,
    default: bool = False,
    remote: bool = False,
    replace: bool = False,
) -> Path:
    """Add context ``name`` to the config file (replacing a different one of that name only
    with ``replace=True``); returns the file's path. A local folder is stored as an absolute path.

    Adding a context changes nothing else: it becomes the default context only with
    ``default=True`` (as ``git remote add`` does not switch branches, a new ``team`` entry
    does not move the work of ``~/.omfs`` out of sight), and the remote of ``om push`` /
    ``om pull`` with ``remote=True``."""
    name = _check_context_name(name)
    problem = depth_problem(storage_options or {})
    if problem:
        raise ConfigError(f"Cannot save the storage options of context {name!r}: {problem}.")
    conf = _read_config() if config_path().exists() else {}
    if "://" not in root:  # a folder: the same one from whichever folder omfs runs in
        root = os.path.abspath(os.path.expanduser(root))
    entry: dict[str, Any] = {"root": root}
    if bucket:
        entry["bucket"] = bucket
    if cluster:
        entry["cluster"] = cluster
    if storage_options:
        entry["storage_options"] = storage_options
    existing = conf.get("contexts", {}).get(name)
    if existing is not None and existing != entry and not replace:
        # the same entry again (to make it the default or the remote) replaces nothing
        raise ConfigError(
            f"A context {name!r} already exists in {str(config_path())!r} (root "
            f"{existing.get('root')!r}); nothing was changed.",
            hint="Pass replace=True to replace it, or choose another name.",
            cli_hint="Give --force to replace it, or choose another name.",
        )
    conf.setdefault("contexts", {})[name] = entry
    if default:
        conf["default"] = name
    if remote:
        conf["remote"] = name
    return _write_config(conf)


def remove_context(name: str) -> Path:
    """Remove context ``name`` from the config file."""
    conf = _read_config()
    if name not in conf.get("contexts", {}):
        raise ConfigError(
            f"There is no context {name!r} in {str(config_path())!r}; known: "
            f"{sorted(conf.get('contexts', {}))}"
        )
    del conf["contexts"][name]
    for key in ("default", "remote"):
        if conf.get(key) == name:
            del conf[key]
    return _write_config(conf)


def resolve(
    root: str | os.PathLike[str] | None = None,
    bucket: str | None = None,
    cluster: Any = None,
    storage_options: dict[str, Any] | None = None,
    context: str | None = None,
) -> Settings:
    """Fill in each setting: the argument, then ``$OMFS_*``, then the named context
    (``context=``, ``$OMFS_CONTEXT``, the file's ``default``), then the file's top-level
    settings, then the built-in default. ``sources`` says where each came from."""
    if root is not None and context is not None:
        raise ConfigError("Give root= or context=, not both: a context names its own root")
    conf = _read_config()
    layers = _Layers(conf, _chosen_context(conf, root, context), explicit=context is not None)
    chosen_root = layers.pick("root", os.fspath(root) if root is not None else None, "OMFS_ROOT")
    options = layers.storage_options(storage_options, chosen_root)
    if chosen_root is None:
        chosen_root = layers.default("root", default_root())
    chosen_bucket = layers.pick("bucket", bucket, "OMFS_BUCKET")
    if chosen_bucket is None:
        chosen_bucket = layers.default("bucket", DEFAULT_BUCKET)
    chosen_cluster = layers.pick("cluster", cluster, "OMFS_CLUSTER")
    if chosen_cluster is None:
        layers.default("cluster", None, "built-in default (a local Dask cluster on first use)")
    return Settings(
        root=chosen_root,
        bucket=chosen_bucket,
        cluster=chosen_cluster,
        storage_options=dict(options or {}),
        context=layers.name if layers.ctx else None,
        sources=layers.sources,
    )


def _chosen_context(
    conf: dict[str, Any], root: object, context: str | None
) -> tuple[str | None, str]:
    """The name of the context to use (None: none) and where that choice came from: the
    argument, else (when no root is given) ``$OMFS_CONTEXT``, else the file's default."""
    env = os.environ
    if context is None and root is None and not env.get("OMFS_ROOT"):
        if env.get("OMFS_CONTEXT"):
            return env["OMFS_CONTEXT"], "$OMFS_CONTEXT"
        return conf.get("default"), f"default in {config_path()}"
    return context, "argument"


class _Layers:
    """The layers a setting is taken from, in order, recording in ``sources`` which one
    gave each setting."""

    def __init__(
        self, conf: dict[str, Any], chosen: tuple[str | None, str], *, explicit: bool
    ) -> None:
        self.conf = conf
        self.name, origin = chosen
        self.explicit = explicit  # context= given: $OMFS_ROOT cannot override its root
        self.sources: dict[str, str] = {}
        self.ctx: dict[str, Any] = {}
        if self.name is not None:
            named = conf.get("contexts", {})
            if self.name not in named:
                raise ConfigError(
                    f"There is no context {self.name!r} in {str(config_path())!r}; known: "
                    f"{sorted(named) or 'none'}. 'om contexts add {self.name} --root URL' "
                    "adds it."
                )
            self.ctx = named[self.name]
            self.sources["context"] = origin

    def _in_context(self) -> str:
        return f"context {self.name!r} in {config_path()}"

    def pick(self, key: str, arg: Any, env_key: str) -> Any:
        """``key`` from the argument, the environment, the context, the file's top level."""
        env = os.environ
        if arg is not None:
            self.sources[key] = "argument"
            return arg
        if env.get(env_key) and not (key == "root" and self.explicit):
            self.sources[key] = f"${env_key}"
            return env[env_key]
        if self.ctx.get(key) is not None:
            self.sources[key] = self._in_context()
            return self.ctx[key]
        if self.conf.get(key) is not None and not self.ctx:
            self.sources[key] = str(config_path())
            return self.conf[key]
        return None

    def default(self, key: str, value: Any, source: str = "built-in default") -> Any:
        self.sources[key] = source
        return value

    def storage_options(self, given: dict[str, Any] | None, root: str | None) -> Any:
        """The argument, else ``$OMFS_STORAGE_OPTIONS``, else those of the context or file
        that gave ``root`` (never another root's: they may hold its credentials)."""
        if given is not None:
            self.sources["storage_options"] = "argument"
            return given
        if os.environ.get("OMFS_STORAGE_OPTIONS"):
            self.sources["storage_options"] = "$OMFS_STORAGE_OPTIONS"
            return _env_storage_options(os.environ["OMFS_STORAGE_OPTIONS"])
        if self.ctx and root == self.ctx.get("root"):
            self.sources["storage_options"] = self._in_context()
            return self.ctx.get("storage_options", {})
        if not self.ctx and root == self.conf.get("root"):
            # the file's storage options belong to the file's root only
            return self.conf.get("storage_options", {})
        return None


def _env_storage_options(text: str) -> dict[str, Any]:
    """``$OMFS_STORAGE_OPTIONS``: a JSON object, or a ConfigError saying why not."""
    try:
        options = parse_bounded(json.loads, text)
    except TooDeepError as exc:
        raise ConfigError(f"$OMFS_STORAGE_OPTIONS cannot be used: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"$OMFS_STORAGE_OPTIONS is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ConfigError("$OMFS_STORAGE_OPTIONS must be a JSON object")
    return options
