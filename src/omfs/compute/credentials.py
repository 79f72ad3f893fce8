"""Why a task on the cluster found no credentials that the process which sent it has.

Credentials never travel with a task: a worker reads its own environment. A background
cluster (``om cluster start``) keeps the environment of the shell that started it, so a
shell that has exported ``AWS_ACCESS_KEY_ID`` since then sees its tasks fail with "no
usable credentials". This module says so, and how to restart the cluster with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omfs.config import secret_options
from omfs.errors import MissingCredentialsError
from omfs.storage import credentials_hint, credentials_in_environment

__all__ = ["RESTART", "cluster_credentials_advice", "explained"]

#: how to give the background cluster this shell's environment
RESTART = "`om cluster stop && om cluster start`"


def cluster_credentials_advice(
    url: str,
    options: Mapping[str, Any],
    kind: str,
    address: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """What to say when a task on a cluster of ``kind`` (``background``, ``private``,
    ``external``) found no credentials for ``url`` that this process has (in ``environ``,
    or as secret ``options``); None when this process has none either."""
    here = credentials_in_environment(url, environ)
    if here:
        names = ", ".join(here)
        if kind == "background":
            return (
                f"This shell has them ({names}), but the background cluster that ran the task "
                "was started without them. Restart it from a shell that has them: "
                f"{RESTART}."
            )
        if kind == "external":
            where = f"the scheduler at {address}" if address else "the cluster"
            return (
                f"This process has them ({names}), but the workers of {where} read their "
                "own environment: set them where the workers are started."
            )
        return None  # a private cluster's workers have this process's environment
    secrets = secret_options(dict(options))
    if not secrets:
        return None
    restart = f" (then restart the background cluster: {RESTART})" if kind == "background" else ""
    return (
        f"The context's storage_options hold them ({', '.join(secrets)}), but credentials "
        "never travel with a task: set them in the environment of the cluster's workers "
        f"({credentials_hint(url)}){restart}."
    )


def explained(
    exc: MissingCredentialsError, advice: Callable[[], str | None] | None
) -> MissingCredentialsError:
    """``exc`` saying why the workers lack credentials this process has, where ``advice``
    knows."""
    said = advice() if advice is not None else None
    if not said:
        return exc
    out = MissingCredentialsError(f"{exc.summary or exc} {said}")
    out.summary = exc.summary
    return out
