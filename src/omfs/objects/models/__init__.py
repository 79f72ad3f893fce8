"""Models: joblib payloads with JSON sidecars, versioned."""

from omfs.objects.models.store import ModelStore

__all__ = ["ModelStore"]
