"""Datasets: versioned Parquet tables and raw files."""

from omfs.datasets.store import DatasetStore

__all__ = ["DatasetStore"]
