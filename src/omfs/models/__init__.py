"""Models (issue 3)."""
