"""Every code block of the documentation runs as written: the ```python, ```console and
```bash blocks of docs/**/*.md and README.md, page by page, in page order, in a fresh home
folder and working directory per page (blocks on one page share state: the Python blocks
run in one interpreter, one after another, and every block sees the same files).

Conventions the pages follow (see docs/development.md):

- ```console blocks: lines starting with ``$ `` are commands (a trailing ``\\`` continues
  one), the lines after a command are its output and are not run. Output that starts with
  ``om: error:`` (or ``{"error":`` with ``--json``) means the command must fail with that
  message, up to a ``…`` that stands for what varies.
- ``<!-- docs-test: skip -->`` on the line before a block: not run (install commands).
- ``<!-- docs-test: file PATH -->`` before a block (e.g. ```toml): its text is written to
  PATH (``~`` is the page's home folder) before the next block runs.
- ``s3://my-bucket`` and ``http://localhost:9000`` are rewritten to a fresh bucket on the
  tests' S3 server (moto) and its endpoint: the pages read as they would for a MinIO on
  this machine.
- a background cluster started on a page (``om cluster start``) is stopped after it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [*sorted((REPO / "docs").rglob("*.md")), REPO / "README.md"]
RUN = ("python", "console", "bash")
S3_BUCKET = "s3://my-bucket"
S3_ENDPOINT = "http://localhost:9000"
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(skip|file\s+(\S+))\s*-->\s*$")
BIN = Path(sys.executable).parent
FAILURE = ("om: error:", '{"error":')  # shown output that says the command fails


@dataclass
class Block:
    lang: str
    code: str
    line: int
    skip: bool = False
    file: str | None = None


def blocks_of(text: str) -> list[Block]:
    """The fenced blocks of a Markdown page, with the marker of the line before each."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.groups()
        end = i + 1
        while not re.match(rf"^{indent}```\s*$", lines[end]):
            end += 1
        code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
        marker = MARKER.match(lines[i - 1]) if i else None
        block = Block(lang, code, i + 1)
        if marker:
            block.skip = marker.group(1) == "skip"
            block.file = marker.group(2)
        found.append(block)
        i = end + 1
    return found


def commands_of(console: str) -> list[tuple[str, list[str]]]:
    """The ``$ `` commands of a console block, each with the output lines shown after it."""
    out: list[tuple[str, list[str]]] = []
    lines = console.splitlines()
    while lines:
        line = lines.pop(0)
        if not line.startswith("$ "):
            if out:
                out[-1][1].append(line)
            continue
        command = line[2:]
        while command.endswith("\\") and lines:
            command += "\n" + lines.pop(0)
        out.append((command, []))
    return out


# The interpreter that runs a page's Python blocks: it reads one JSON request per line
# ({"code", "where"}), runs it in one namespace and answers on its own copy of stdout;
# what the blocks print (and their child processes) goes to a log file.
DRIVER = r"""
import json, os, sys, traceback
answer = os.fdopen(os.dup(1), "w")
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.dup2(log, 1); os.dup2(log, 2)
namespace = {"__name__": "__main__"}
for request in sys.stdin:
    block = json.loads(request)
    try:
        exec(compile(block["code"], block["where"], "exec"), namespace)
        reply = {"ok": True}
    except BaseException:
        reply = {"ok": False, "error": traceback.format_exc()}
    sys.stdout.flush(); sys.stderr.flush()
    answer.write(json.dumps(reply) + "\n"); answer.flush()
"""


class Page:
    """One page's fresh home, working directory and Python interpreter."""

    def __init__(self, path: Path, tmp: Path, s3: tuple[str, str] | None):
        self.path, self.s3 = path, s3
        self.home, self.work, self.state = tmp / "home", tmp / "work", tmp / "state"
        for folder in (self.home, self.work):
            folder.mkdir()
        self.log = tmp / "python.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMFS_")}
        self.env = {
            **env,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "OMFS_STATE_DIR": str(self.state),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "NO_COLOR": "1",
            "COLUMNS": "100",
        }
        self.python: subprocess.Popen | None = None
        self.times: list[tuple[float, str]] = []

    def text(self, code: str) -> str:
        if self.s3:
            code = code.replace(S3_BUCKET, self.s3[0]).replace(S3_ENDPOINT, self.s3[1])
        return code

    def where(self, block: Block) -> str:
        return f"{self.path.relative_to(REPO)}:{block.line}"

    def run(self, block: Block) -> None:
        started = time.monotonic()
        self._run(block)
        self.times.append((time.monotonic() - started, self.where(block)))

    def _run(self, block: Block) -> None:
        code = self.text(block.code)
        if block.file:
            target = Path(block.file.replace("~", str(self.home), 1))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code)
        elif block.skip or block.lang not in RUN:
            return
        elif block.lang == "python":
            self.run_python(code, self.path.relative_to(REPO), block.line)
        elif block.lang == "bash":
            self.shell(code, [], self.where(block))
        else:
            for command, shown in commands_of(code):
                self.shell(command, shown, self.where(block))

    def run_python(self, code: str, page: Path, line: int) -> None:
        """Run ``code`` in the page's interpreter; its tracebacks name the page's lines."""
        if self.python is None:
            self.python = subprocess.Popen(
                [sys.executable, "-c", DRIVER, str(self.log)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=self.work,
                env=self.env,
            )
        assert self.python.stdin and self.python.stdout
        request = {"code": "\n" * line + code, "where": str(page)}
        self.python.stdin.write(json.dumps(request) + "\n")
        self.python.stdin.flush()
        reply = self.python.stdout.readline()
        where = f"{page}:{line}"
        assert reply, f"{where}: the interpreter died\n{self.log.read_text()[-3000:]}"
        result = json.loads(reply)
        assert result["ok"], f"{where}: the block failed\n{code}\n{result['error']}"

    def shell(self, command: str, shown: list[str], where: str) -> None:
        out = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            capture_output=True,
            text=True,
            cwd=self.work,
            env=self.env,
            timeout=180,
        )
        report = f"{where}: $ {command}\nstdout: {out.stdout[-2000:]}\nstderr: {out.stderr[-2000:]}"
        error = shown[0] if shown and shown[0].startswith(FAILURE) else None
        if error is None:
            assert out.returncode == 0, report
            return
        assert out.returncode != 0, f"expected a failure\n{report}"
        expected = error.split("…")[0].rstrip()  # "…" stands for what varies (paths)
        assert expected in out.stderr, f"expected {error!r}\n{report}"

    def close(self) -> None:
        if self.python is not None:
            assert self.python.stdin
            self.python.stdin.close()
            try:
                self.python.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.python.kill()
        if (self.state / "cluster.json").exists():
            subprocess.run(["om", "cluster", "stop"], env=self.env, capture_output=True)


def test_pages_have_runnable_blocks():
    counts = {p.name: sum(b.lang in RUN for b in blocks_of(p.read_text())) for p in PAGES}
    assert sum(counts.values()) >= 40, counts
    for page in ("tutorial.md", "README.md"):
        assert counts[page] >= 3, counts


def test_block_parser_and_markers():
    page = (
        "<!-- docs-test: skip -->\n```bash\nrm -rf /\n```\n\n"
        "- item\n\n    ```python\n    x = 1\n    ```\n"
    )
    skipped, indented = blocks_of(page)
    assert skipped.skip and skipped.lang == "bash"
    assert indented.code == "x = 1\n" and not indented.skip
    console = "$ om a \\\n  --b\nshown\n$ om c\nom: error: no\n"
    assert commands_of(console) == [("om a \\\n  --b", ["shown"]), ("om c", ["om: error: no"])]


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_blocks_run(path, tmp_path, request):
    text = path.read_text()
    blocks = [b for b in blocks_of(text) if b.file or (b.lang in RUN and not b.skip)]
    if not blocks:
        pytest.skip("no runnable block")
    s3 = None
    if S3_BUCKET in text:
        root = request.getfixturevalue("s3_root_factory")()
        endpoint = request.getfixturevalue("s3_options")["client_kwargs"]["endpoint_url"]
        s3 = (root.removesuffix("/root"), endpoint)
    page = Page(path, tmp_path, s3)
    started = time.monotonic()
    try:
        for block in blocks:
            page.run(block)
    finally:
        page.close()
    slowest = ", ".join(f"{where} {t:.1f} s" for t, where in sorted(page.times)[-3:])
    print(f"{path.name}: {len(blocks)} blocks in {time.monotonic() - started:.1f} s ({slowest})")
