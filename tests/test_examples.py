"""The README's first command runs examples/quickstart.py on a fresh machine: run it as a
plain script, twice (a second run finds the first one's data), on an empty home folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.slow
@pytest.mark.cluster
def test_quickstart_runs_as_written_and_again(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "OMFS_STATE_DIR": str(tmp_path / "state")}
    for key in ("OMFS_ROOT", "OMFS_CONTEXT", "OMFS_CLUSTER", "OMFS_CONFIG", "XDG_CONFIG_HOME"):
        env.pop(key, None)
    for run in (1, 2):
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "quickstart.py")],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"prod: ['quickstart/units'] v{run} from omega" in out.stdout
        assert "Traceback" not in out.stderr
        # Dask's own chatter (a dashboard port in use, ...) stays out of the output
        assert "8787" not in out.stderr and "distributed." not in out.stderr, out.stderr
        fitted = 2 * run
        inputs = f"X=quickstart/sales@v{fitted}[price], Y=quickstart/sales@v{fitted}[units]"
        assert f"fitted v{fitted} on {inputs}\n" in out.stdout
