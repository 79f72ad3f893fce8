"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s docs``, ``nox -s bench``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "docs", "tests"]
nox.options.default_venv_backend = "venv"


#: Microsoft's Azure Blob Storage emulator, from the npm registry, for the Azure tests
AZURITE = "azurite@3.35.0"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, against memory://, a local folder, moto's S3 server, a GCS
    emulator, Azurite and Dask."""
    session.install("-e", ".[test]")
    _install_chromium(session)
    env = {}
    azurite = _install_azurite(session)
    if azurite:
        env["OMFS_TEST_AZURITE"] = azurite
    # two test processes: most tests wait on servers, workers and subprocesses, so two keep
    # both cores busy; worksteal evens out the long crash-campaign tests at the end
    args = session.posargs or ["-n", "2", "--dist", "worksteal"]
    session.run("pytest", *args, env=env)


#: the browser om ui's end-to-end tests drive (Playwright's own downloads are not used)
CHROMIUM = Path("/usr/bin/chromium")


def _install_chromium(session: nox.Session) -> None:
    """Install Debian's Chromium for tests/ui/test_browser.py when it is missing (as root,
    with apt-get); otherwise those tests skip, and fail under CI=true."""
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        session.warn(f"{CHROMIUM} is missing and cannot be installed here: the browser tests skip")
        return
    session.run("apt-get", "update", "-qq", external=True)
    apt = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    session.run(*apt, external=True, env={"DEBIAN_FRONTEND": "noninteractive"})


def _install_azurite(session: nox.Session) -> str | None:
    """Install Azurite with npm into the session's folder; its ``azurite-blob`` script."""
    if shutil.which("npm") is None:
        session.warn("npm not found: the Azure tests need Azurite (Node.js) and cannot run")
        return None
    prefix = Path(session.virtualenv.location) / "azurite"
    script = prefix / "node_modules" / ".bin" / "azurite-blob"
    if not script.exists():
        session.run(
            "npm",
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            AZURITE,
            external=True,
        )
    return str(script)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and format), the layer contracts (import-linter), mypy (strict on objects/
    and storage/) and the structure limits of tools/structure.py."""
    session.install("ruff>=0.5", "mypy>=1.10", "import-linter>=2.0")
    paths = ["src", "tests", "benchmarks", "examples", "tools", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    source = {"PYTHONPATH": "src"}  # both read the source; neither needs omfs installed
    session.run("lint-imports", env=source)
    session.run("mypy", env=source)
    session.run("python", "tools/structure.py", "--check")


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
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (strict: a broken link or reference fails).

    Offline: no web fonts or CDN assets; the CLI reference is generated from the Typer app."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def quickstart(session: nox.Session) -> None:
    """Install omfs and run examples/quickstart.py on the default local context."""
    session.install("-e", ".[examples]")
    session.run("python", "examples/quickstart.py")
