"""Serving benchmark: om serve (audit on and off), a minimal Starlette/uvicorn app calling
``model.predict`` (the floor) and ``mlflow models serve``, one worker each, the same
LogisticRegression on iris, single-row predicts on ``/invocations``.

Figures: p50 and p99 latency at concurrency 1, requests per second at concurrency 16 and
32, measured with ``wrk`` (a separate process; ``apt-get install wrk``), and the server's
CPU time per request at concurrency 16 (its processes' user + system time over the requests
answered: the figure least moved by other work on a shared machine). Every server runs
for the whole benchmark; each figure is measured in rounds that alternate the servers
(A, B, C, D, A, B, C, D, ...), and the medians over the rounds are reported, as are the
medians of each round's ratios (a ratio taken within one round sees the same machine load).

    python benchmarks/serve_bench.py [--seconds 8] [--rounds 3]

Every server gets the same uvicorn settings: httptools, uvloop, no access log.

MLflow runs from its own environment: ``$OMFS_BENCH_MLFLOW`` names its folder (default
``/work/bench-mlflow``: ``python3 -m venv DIR && DIR/bin/pip install mlflow scikit-learn
'uvicorn[standard]'``); without it MLflow is skipped, and the script says so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
MINIMAL = """
import json, os
import joblib
import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

model = joblib.load(os.environ["BENCH_MODEL"])


async def invocations(request):
    doc = json.loads(await request.body())
    X = np.asarray(doc["inputs"], dtype=np.float64)
    return JSONResponse({"predictions": model.predict(X).tolist()})


app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"])])
"""
LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
#: the same uvicorn settings for every server (MLflow's uvicorn reads them from its env)
UVICORN_ENV = {"UVICORN_HTTP": "httptools", "UVICORN_LOOP": "uvloop", "UVICORN_ACCESS_LOG": "0"}
UVICORN_ARGS = ["--http", "httptools", "--loop", "uvloop", "--no-access-log"]
FIGURES = ("p50_ms", "p99_ms", "rps_c16", "rps_c32", "cpu_us")
_JSON = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server ended: {log.read_text()[-2000:]}")
        try:
            if httpx.post(f"{url}/invocations", content=BODY, headers=_JSON).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run(
        [*command, "-s", str(script), f"{url}/invocations"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    found["requests"] = float(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out)
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        found[f"p{pct}"] = float(match.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    found["errors"] = float(errors.group(1)) if errors else 0.0
    return found


class Served:
    """One server process under test, and its figures of every round."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # its log goes to a file: an undrained pipe fills and stops a chatty server (MLflow
        # answered nothing after the first round that way)
        self.log = tempfile.NamedTemporaryFile("w+", prefix="serve-bench-", suffix=".log")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
        )
        self.rounds: dict[str, list[float]] = {f: [] for f in FIGURES}
        self.errors = 0.0

    def measure(self, figure: str, script: Path, seconds: int) -> None:
        connections = 1 if figure.startswith("p") else int(figure.rpartition("c")[2])
        cpu = self.cpu_seconds()
        run = wrk(self.url, script, connections, seconds)
        cpu = self.cpu_seconds() - cpu
        self.errors += run["errors"]
        if connections == 1:
            self.rounds["p50_ms"].append(run["p50"])
            self.rounds["p99_ms"].append(run["p99"])
        else:
            self.rounds[figure].append(run["rps"])
        if connections == 16:  # a server that answered nothing (stuck) counts as infinite
            per = cpu / run["requests"] * 1e6 if run["requests"] else float("inf")
            self.rounds["cpu_us"].append(per)

    def cpu_seconds(self) -> float:
        """The CPU time the server's processes used so far (MLflow's uvicorn is a child)."""
        import psutil

        root = psutil.Process(self.proc.pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total

    def median(self, figure: str) -> float:
        return statistics.median(self.rounds[figure])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def run_rounds(servers: list[Served], args: argparse.Namespace) -> None:
    """Warm every server up, then each figure in rounds alternating the servers."""
    for server in servers:
        wait_up(server.url, server.proc, Path(server.log.name))
        wrk(server.url, args.lua, 8, 2)
    for number in range(1, args.rounds + 1):
        for figure in ("p50_ms", "rps_c16", "rps_c32"):
            for server in servers:
                server.measure(figure, args.lua, args.seconds)
        print(f"round {number}/{args.rounds}: load {_load()}", flush=True)
        for server in servers:
            print("  " + _line(server, -1), flush=True)


def report(servers: list[Served]) -> None:
    print()
    print(f"medians of {len(servers[0].rounds['rps_c16'])} rounds:")
    header = f"{'server':<24}{'p50 ms':>9}{'p99 ms':>9}{'req/s c16':>11}{'req/s c32':>11}"
    print(header + f"{'CPU us/req':>12}")
    for server in servers:
        print(_line(server))
    floor, mlflow = servers[0], next((s for s in servers if s.name.startswith("mlflow")), None)
    for server in servers[1:]:
        if server is mlflow:
            continue
        c16, c32 = (_ratio(server, floor, f) for f in ("rps_c16", "rps_c32"))
        line = f"{server.name}: {c16:.2f}x / {c32:.2f}x the floor's req/s (c16 / c32)"
        if mlflow is not None:
            line += f", p50 {_ratio(server, mlflow, 'p50_ms'):.2f}x MLflow's"
            rps = _ratio(server, mlflow, "rps_c32")
            line += f", {rps:.1f}x MLflow's req/s (c32)"
        print(line)
    audited = [s for s in servers if "audit on" in s.name]
    plain = [s for s in servers if "no-audit" in s.name]
    if audited and plain:
        c16, c32 = (_ratio(audited[0], plain[0], f) for f in ("rps_c16", "rps_c32"))
        cpu = _ratio(audited[0], plain[0], "cpu_us")
        print(f"audit on / off: {c16:.2f}x (c16), {c32:.2f}x (c32) the req/s, {cpu:.2f}x the CPU")


def _ratio(server: Served, other: Served, figure: str) -> float:
    """The median over rounds of ``server``'s figure over ``other``'s in the same round."""
    pairs = zip(server.rounds[figure], other.rounds[figure], strict=True)
    return statistics.median(a / b if b else float("inf") for a, b in pairs)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def _line(server: Served, index: int | None = None) -> str:
    def value(figure: str) -> float:
        return server.rounds[figure][index] if index is not None else server.median(figure)

    return (
        f"{server.name:<24}{value('p50_ms'):>9.2f}{value('p99_ms'):>9.2f}"
        f"{value('rps_c16'):>11.0f}{value('rps_c32'):>11.0f}{value('cpu_us'):>12.0f}"
        + (f"  ({server.errors:.0f} errors)" if server.errors else "")
    )


def commands(
    work: Path, env: dict[str, str], with_mlflow: bool
) -> list[tuple[str, list[str], dict[str, str]]]:
    """The servers to compare: name, command (without ``--port``), environment."""
    om = [str(Path(sys.executable).parent / "om"), "--root", str(work / "ctx"), "serve"]
    om += ["--model", "iris@prod"]
    uvicorn = [sys.executable, "-m", "uvicorn", "minimal_app:app", "--log-level", "warning"]
    found = [
        ("minimal starlette", [*uvicorn, *UVICORN_ARGS], env),
        ("om serve (audit on)", om, env),
        ("om serve (--no-audit)", [*om, "--no-audit"], env),
    ]
    mlflow_env = Path(os.environ.get("OMFS_BENCH_MLFLOW", "/work/bench-mlflow"))
    if not with_mlflow:
        return found
    if not (mlflow_env / "bin" / "mlflow").exists():
        print(f"MLflow skipped: no environment at {mlflow_env} (set OMFS_BENCH_MLFLOW)")
        return found
    saved = work / "mlflow-model"
    script = "import joblib, mlflow.sklearn, sys; "
    script += "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2])"
    python = str(mlflow_env / "bin" / "python")
    subprocess.run(
        [python, "-c", script, str(work / "model.joblib"), str(saved)],
        check=True,
        capture_output=True,
    )
    # mlflow starts uvicorn from its PATH; uvicorn reads the UVICORN_* settings
    path = f"{mlflow_env / 'bin'}{os.pathsep}{os.environ['PATH']}"
    mlflow = [str(mlflow_env / "bin" / "mlflow"), "models", "serve", "-m", str(saved)]
    mlflow += ["--env-manager", "local", "-w", "1"]
    found.append(("mlflow models serve", mlflow, {**env, **UVICORN_ENV, "PATH": path}))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="per figure and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true", help="compare with the floor only")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("serve_bench needs wrk (apt-get install wrk)")
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import omfs

    work = Path(tempfile.mkdtemp(prefix="omfs-serve-bench-"))
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    joblib.dump(model, work / "model.joblib")
    omfs.setup(str(work / "ctx")).models.put(model, "iris", tag="prod")
    (work / "minimal_app.py").write_text(MINIMAL)
    args.lua = work / "post.lua"
    args.lua.write_text(LUA)
    env = {
        **os.environ,
        "BENCH_MODEL": str(work / "model.joblib"),
        "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")]),
    }
    found = commands(work, env, not args.no_mlflow)
    print(f"load before: {_load()}", flush=True)
    servers = [Served(name, command, environ) for name, command, environ in found]
    try:
        run_rounds(servers, args)
    finally:
        for server in servers:
            server.stop()
    report(servers)
    print(f"load after: {_load()}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
