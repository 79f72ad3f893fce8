"""A task's log and warnings on a threaded worker: each task gets its own, and the
process's warnings state is as it was once no task runs."""

from __future__ import annotations

import threading
import warnings

from omfs.compute import tasks


def test_two_tasks_on_threads_each_capture_their_own_warnings_and_restore_the_state():
    """catch_warnings per task was not thread-safe: when the first task ended, the second
    task's warnings went uncaptured, and its end left every warning routed for good."""
    filters, shown = list(warnings.filters), warnings.showwarning
    entered, first_done = threading.Barrier(2), threading.Event()
    logs: dict[str, list[str]] = {}

    def task(name: str, first: bool) -> None:
        with tasks._captured() as capture:
            entered.wait()
            if first:
                warnings.warn(f"from {name}", UserWarning, stacklevel=1)
            else:
                first_done.wait()
                warnings.warn(f"from {name}", UserWarning, stacklevel=1)
        logs[name] = capture.lines
        if first:
            first_done.set()

    threads = [threading.Thread(target=task, args=(n, n == "a")) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [line.split(" (")[0] for line in logs["a"]] == ["UserWarning: from a"]
    assert [line.split(" (")[0] for line in logs["b"]] == ["UserWarning: from b"]
    assert warnings.filters == filters and warnings.showwarning is shown
