"""Operations across objects and contexts, built only on the public versioned-object
protocol: ``promote`` (one version to another bucket or context), ``sync`` (objects with
their history), ``bundle`` (the same through a tar file), ``gc`` and ``fsck``.
"""
