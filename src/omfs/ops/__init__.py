"""Operations across objects and contexts, built only on the public versioned-object
protocol: ``promote`` (one version to another bucket or context), ``sync`` (objects with
their history; ``rebase`` for diverged ones, ``inventory`` for what each side holds),
``bundle`` (the same through a tar file: ``bundle_read``, ``bundle_import``, ``staging``),
``gc`` and ``fsck``. Their reports are typed in ``reports``.

Operations sit below the context layer: they take contexts (``common.Context``) and never
import :mod:`omfs.context`; the facade (``omfs.sync``, ``omfs.import_``) resolves names.
"""
