"""A claiming ``fire`` for scheduler tests, and a scheduler process that uses it.

``claiming_fire(out)`` claims ``{bucket}/jobs/_runs/{job}/{slot-id}.json`` with the
storage's create-if-absent (what the job store's run record does) and, when it won, appends
``slot-id slot-timestamp fired-timestamp pid`` to the local file ``out``.

usage: python omfs_scheduling.py ROOT OPTIONS_JSON OUT UNTIL
runs a Scheduler on ROOT until the epoch time UNTIL; prints ``ready`` once it runs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime
from typing import Any

from omfs.objects.jobs.schedule import slot_id


def claim_key(bucket: str, job: str, slot: datetime) -> str:
    return f"{bucket}/jobs/_runs/{job}/{slot_id(slot)}.json"


def claiming_fire(out: str):
    def fire(om: Any, job: str, slot: datetime, params: dict) -> bool:
        doc = {"job": job, "slot": slot.isoformat(), "params": params, "pid": os.getpid()}
        try:
            om.storage.create(claim_key(om.bucket, job, slot), json.dumps(doc).encode())
        except FileExistsError:
            return False
        fired = time.time()
        with open(out, "a") as f:  # one short line per write: appends do not interleave
            f.write(f"{slot_id(slot)} {slot.timestamp():.3f} {fired:.6f} {os.getpid()}\n")
        return True

    return fire


def main(root: str, options: str, out: str, until: float) -> None:
    import omfs
    from omfs.compute.scheduler import Scheduler

    om = omfs.setup(root, storage_options=json.loads(options))
    stop = threading.Event()
    threading.Timer(max(0.0, until - time.time()), stop.set).start()
    scheduler = Scheduler(om, claiming_fire(out))
    scheduler.refresh()
    print("ready", flush=True)
    scheduler.run(stop)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
