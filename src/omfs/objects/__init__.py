"""Versioned objects: the commit log, the versioned-object protocol every store shares, and
the two stores built on it (``datasets``: Parquet tables; ``models``: joblib payloads).

The protocol (:class:`omfs.objects.versioned.VersionedStore`) is what ``omfs.ops`` uses:
select a version, read its metadata and payload files, commit a change, export and import
a version, and read the state gc needs.
"""
