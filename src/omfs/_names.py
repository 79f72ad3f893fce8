"""Name rules for buckets, datasets and models, checked in one place.

A name is one or more ``/``-separated parts. Each part starts with a letter or digit and
holds letters, digits, ``_``, ``-`` and ``.``. That excludes empty parts, ``.``/``..``,
absolute paths, backslashes, control characters and the ``@`` of version selectors, so a
valid name can never address anything outside its bucket and store. Parts starting with
``_`` are reserved for omfs' own folders (``_versions``, ``_data``, ``_index``). Names
are NFC-normalised first, so one name has one spelling in storage.
"""

from __future__ import annotations

import re
import unicodedata

from omfs.errors import InvalidNameError

__all__ = ["MAX_NAME_LENGTH", "check_bucket", "check_name", "check_tag", "split_selector"]

MAX_NAME_LENGTH = 512
_PART = re.compile(r"[^\W_][\w.\-]*", re.UNICODE)
_VERSION = re.compile(r"v?(\d+)")


def _problem(name: str) -> str | None:
    """Return why ``name`` is refused, or None when it is fine."""
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is longer than {MAX_NAME_LENGTH} characters"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "it contains a control character"
    if "\\" in name:
        return "it contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "it is an absolute path"
    if "://" in name:
        return "it looks like a URL"
    for part in name.split("/"):
        if part == "":
            return "it has an empty part ('//' or a leading or trailing '/')"
        if part in (".", ".."):
            return f"it contains {part!r}"
        if part.startswith("_"):
            return f"the part {part!r} starts with '_', which omfs reserves for its own files"
        if part.endswith("."):
            return f"the part {part!r} ends with '.'"
        if not _PART.fullmatch(part):
            bad = sorted({c for c in part if not (c.isalnum() or c in "_.-")})
            if bad:
                return f"it contains {''.join(bad)!r}; use letters, digits, '_', '-' and '.'"
            return f"the part {part!r} must start with a letter or digit"
    return None


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a valid object name, else raise InvalidNameError."""
    if not isinstance(name, str):
        raise InvalidNameError(f"Invalid {what}: expected a string, got {type(name).__name__}")
    # one spelling per name: 'é' typed as e + combining accent (NFD, macOS file names) is 'é'
    name = unicodedata.normalize("NFC", name)
    problem = _problem(name)
    if problem:
        raise InvalidNameError(f"Invalid {what} ({problem}): {name!r}")
    return name


def check_bucket(bucket: object) -> str:
    """Return ``bucket`` if it is a valid bucket name (a single name part)."""
    name = check_name(bucket, "bucket name")
    if "/" in name:
        raise InvalidNameError(f"Invalid bucket name (it contains '/'): {name!r}")
    return name


def check_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid tag: a single name part that cannot be read as a
    version (``v3``, ``3``) nor as ``latest``."""
    name = check_name(tag, "tag")
    if "/" in name or _VERSION.fullmatch(name) or name == "latest":
        raise InvalidNameError(
            f"Invalid tag {name!r}: it would read as a version selector ('v3', '3', 'latest'); "
            "tags are names such as 'prod' or 'prod-2024'"
        )
    return name


def split_selector(spec: object) -> tuple[str, int | str | None]:
    """Split ``"m@v3"`` into ``("m", 3)``, ``"m@prod"`` into ``("m", "prod")``, ``"m"`` and
    ``"m@latest"`` into ``("m", None)``; the name part is validated."""
    if not isinstance(spec, str):
        raise InvalidNameError(f"Invalid name: expected a string, got {type(spec).__name__}")
    name, sep, selector = spec.partition("@")
    name = check_name(name)
    if not sep:
        return name, None
    if not selector or "@" in selector:
        raise InvalidNameError(
            f"Invalid version selector in {spec!r}: use 'name@v3' for a version or "
            "'name@tag' for a tag"
        )
    match = _VERSION.fullmatch(selector)
    if match:
        return name, int(match.group(1))
    if selector == "latest":
        return name, None
    return name, check_name(selector, "tag")
