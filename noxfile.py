"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, against memory://, a local folder, moto's S3 server and Dask."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.5")
    paths = ["src", "tests", "benchmarks", "examples", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def crash(session: nox.Session) -> None:
    """The full crash campaign: every mutating operation killed at every storage write and
    at timed points (at least 30 kills per operation and backend); prints the counts."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/test_crash_campaign.py",
        "-s",
        "-q",
        *session.posargs,
        env={"OMFS_CRASH_FULL": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks quoted in the README (several GB of temporary data; takes minutes)."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)
    if not session.posargs:
        session.run("python", "benchmarks/log_growth.py")


@nox.session
def quickstart(session: nox.Session) -> None:
    """Install omfs and run examples/quickstart.py on the default local context."""
    session.install("-e", ".[examples]")
    session.run("python", "examples/quickstart.py")
