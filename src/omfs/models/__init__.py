"""Models: joblib payloads with JSON sidecars, versioned."""

from omfs.models.store import ModelStore

__all__ = ["ModelStore"]
