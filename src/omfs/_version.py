"""The version of omfs, in a module of its own so that any module can read it without
importing the package's facade (which imports the context, which would be a cycle)."""

__version__ = "0.1.0"
