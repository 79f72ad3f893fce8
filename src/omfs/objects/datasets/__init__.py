"""Datasets: versioned Parquet tables and raw files."""

from omfs.objects.datasets.store import DatasetStore

__all__ = ["DatasetStore"]
