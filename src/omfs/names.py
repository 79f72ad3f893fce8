"""Name rules for buckets, datasets and models, checked in one place.

A name is one or more ``/``-separated parts. Each part starts with a letter or digit and
holds letters, digits, ``_``, ``-`` and ``.``. That excludes empty parts, ``.``/``..``,
absolute paths, backslashes, control characters and the ``@`` of version selectors, so a
valid name can never address anything outside its bucket and store. Parts starting with
``_`` are reserved for omfs' own folders (``_versions``, ``_data``, ``_index``). Names
are NFC-normalised first, so one name has one spelling in storage, and at most 255 bytes in
UTF-8 (the index file of a name is named after the whole name, and file systems allow 255).

A *new* name must also travel to every disk a root is synced to: it may not be a device
name that Windows reserves (``CON``, ``NUL.txt`` ...), nor look like an existing name
(:func:`skeleton`). Existing objects with such names still read.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from omfs.errors import InvalidNameError

__all__ = [
    "MAX_NAME_BYTES",
    "check_bucket",
    "check_name",
    "check_new_name",
    "check_tag",
    "look_alike",
    "skeleton",
    "split_selector",
]

#: file systems (ext4, APFS, NTFS) allow 255 bytes per file name, and a name's index file
#: is named after the whole name ('/' as '~')
MAX_NAME_BYTES = 255
#: device names Windows reserves, with or without an extension, in any case
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"{dev}{n}" for dev in ("com", "lpt") for n in "0123456789\u00b9\u00b2\u00b3"}
)
_PART = re.compile(r"[^\W_][\w.\-]*", re.UNICODE)
_VERSION = re.compile(r"v?(\d+)")


def _problem(name: str) -> str | None:
    """Return why ``name`` is refused, or None when it is fine."""
    if not name:
        return "it is empty"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return (
            f"it is {size} bytes long in UTF-8 ({len(name)} characters); a name may have at "
            f"most {MAX_NAME_BYTES} bytes, as file systems allow for one file name"
        )
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


def check_new_name(name: str, what: str = "name") -> str:
    """Return ``name`` (already valid) if it may also be *created*: no part is a device
    name that Windows reserves, so a root synced to a Windows laptop keeps every object.
    (Windows' forbidden characters and trailing dots or spaces are refused for every name.)
    Existing objects with such names still read; only new ones are refused."""
    for part in name.split("/"):
        if part.split(".", 1)[0].casefold() in _WINDOWS_RESERVED:
            raise InvalidNameError(
                f"Invalid {what} {name!r}: {part!r} is a device name that Windows reserves "
                "(CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any extension), so the object "
                "could not be synced to a Windows disk. Choose another name."
            )
    return name


@functools.cache
def _latin_look_alikes() -> dict[str, str]:
    """Each non-ASCII character that Unicode's confusables data (UTS #39, as packaged by
    confusable-homoglyphs) lists as looking like an ASCII letter or digit, mapped to it:
    Cyrillic a (U+0430) -> 'a', Greek omicron (U+03BF) -> 'o'."""
    from confusable_homoglyphs.confusables import confusables_data

    out = {}
    for char, glyphs in confusables_data.items():
        if char.isascii():
            continue  # ASCII stays itself: 'l' and '1' are different names
        for glyph in glyphs:
            candidate = glyph["c"].strip("\u200e")
            if len(candidate) == 1 and candidate.isascii() and candidate.isalnum():
                out[char] = candidate.casefold()
                break
    return out


def skeleton(name: str) -> str:
    """What ``name`` looks like: NFKC (fullwidth and mathematical letters become ASCII),
    case-folded, and each non-ASCII look-alike of an ASCII letter or digit replaced by it.
    Two names with one skeleton read the same to a person: ``sales``, ``Sales``, and
    ``sales`` written with a Cyrillic a (U+0430) or in fullwidth letters."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    if folded.isascii():
        return folded  # the common case needs no table
    table = _latin_look_alikes()
    return "".join(table.get(c, c) for c in folded)


def look_alike(name: str, others: Iterable[str]) -> str | None:
    """The first of ``others`` (other than ``name`` itself) that looks like ``name``."""
    mine = skeleton(name)
    return next((o for o in others if o != name and skeleton(o) == mine), None)


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
