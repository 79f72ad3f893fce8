"""Serving benchmark: om serve (audit on and off), a minimal Starlette/uvicorn app calling
``model.predict`` (the floor) and ``mlflow models serve``, one worker each, the same
LogisticRegression on iris, single-row predicts on ``/invocations``.

Figures: p50 and p99 latency at concurrency 1, requests per second at concurrency 16 and
32, measured with ``wrk`` (a separate process; ``apt-get install wrk``).

    python benchmarks/serve_bench.py [--seconds 8]

MLflow runs from its own environment: ``$OMFS_BENCH_MLFLOW`` names its folder (default
``/work/bench-mlflow``: ``python3 -m venv DIR && DIR/bin/pip install mlflow scikit-learn``);
without it MLflow is skipped, and the script says so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server ended: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.post(f"{url}/invocations", content=BODY, headers=_JSON).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


_JSON = {"Content-Type": "application/json"}


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"{url}/invocations",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out)
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        found[f"p{pct}"] = float(match.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    found["errors"] = float(errors.group(1)) if errors else 0.0
    return found


def measure(name: str, command: list[str], env: dict[str, str], port: int, args) -> dict:
    url = f"http://127.0.0.1:{port}"
    if "mlflow" in command[0]:
        env = {**env, "PATH": env["OMFS_MLFLOW_PATH"]}  # it starts uvicorn from its PATH
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_up(url, proc)
        wrk(url, args.lua, 8, 2)  # warm up
        one = wrk(url, args.lua, 1, args.seconds)
        row = {"server": name, "p50_ms": one["p50"], "p99_ms": one["p99"]}
        for c in (16, 32):
            run = wrk(url, args.lua, c, args.seconds)
            row[f"rps_c{c}"] = run["rps"]
            row["errors"] = row.get("errors", 0) + run["errors"]
        return row
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
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
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "BENCH_MODEL": str(work / "model.joblib"),
        "PYTHONPATH": os.pathsep.join([str(work), os.environ.get("PYTHONPATH", "")]),
    }
    om = [str(bindir / "om"), "--root", str(work / "ctx"), "serve", "--model", "iris@prod"]
    servers = [
        (
            "minimal starlette",
            lambda p: [
                sys.executable,
                "-m",
                "uvicorn",
                "minimal_app:app",
                "--port",
                str(p),
                "--log-level",
                "warning",
            ],
        ),
        ("om serve (audit on)", lambda p: [*om, "--port", str(p)]),
        ("om serve (--no-audit)", lambda p: [*om, "--port", str(p), "--no-audit"]),
    ]
    mlflow_env = Path(os.environ.get("OMFS_BENCH_MLFLOW", "/work/bench-mlflow"))
    if (mlflow_env / "bin" / "mlflow").exists():
        saved = work / "mlflow-model"
        subprocess.run(
            [
                str(mlflow_env / "bin" / "python"),
                "-c",
                "import joblib, mlflow.sklearn, sys; "
                "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2])",
                str(work / "model.joblib"),
                str(saved),
            ],
            check=True,
            capture_output=True,
        )
        env["OMFS_MLFLOW_PATH"] = f"{mlflow_env / 'bin'}{os.pathsep}{os.environ['PATH']}"
        servers.append(
            (
                "mlflow models serve",
                lambda p: [
                    str(mlflow_env / "bin" / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    str(saved),
                    "-p",
                    str(p),
                    "--env-manager",
                    "local",
                    "-w",
                    "1",
                ],
            )
        )
    else:
        print(f"MLflow skipped: no environment at {mlflow_env} (set OMFS_BENCH_MLFLOW)")
    rows = []
    for name, command in servers:
        port = free_port()
        rows.append(measure(name, command(port), env, port, args))
        print(_line(rows[-1]), flush=True)
    print()
    print(f"{'server':<24}{'p50 ms':>9}{'p99 ms':>9}{'req/s c16':>11}{'req/s c32':>11}")
    for row in rows:
        print(_line(row))
    floor = rows[0]
    for row in rows[1:3]:
        print(
            f"{row['server']}: {row['rps_c16'] / floor['rps_c16']:.2f}x / "
            f"{row['rps_c32'] / floor['rps_c32']:.2f}x the floor's req/s (c16 / c32)",
            end="",
        )
        if len(rows) == 4:
            print(f", p50 {row['p50_ms'] / rows[3]['p50_ms']:.2f}x MLflow's", end="")
        print()
    shutil.rmtree(work, ignore_errors=True)


def _line(row: dict) -> str:
    return (
        f"{row['server']:<24}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
        f"{row['rps_c16']:>11.0f}{row['rps_c32']:>11.0f}"
        + (f"  ({row['errors']:.0f} errors)" if row.get("errors") else "")
    )


if __name__ == "__main__":
    main()
