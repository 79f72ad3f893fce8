"""Jobs: Python scripts and Jupyter notebooks, versioned, with the records of their runs."""

from omfs.objects.jobs.runs import RunRecord, RunStore
from omfs.objects.jobs.store import JobStore

__all__ = ["JobStore", "RunRecord", "RunStore"]
