"""The models a server answers with, kept loaded and following their tags.

Requests name a model by ``name``, ``name@tag`` or ``name@vN``. The first request for a
selector resolves it (the log's head, then the payload, verified) and keeps the answer as a
*binding*; later requests read the binding, a dictionary look-up. A watcher thread reads
each served model's log hint (one small file) a few times a second; when it changes (a tag
moved, a new version, a promotion or pull from another process), every binding of that
model is resolved again, the new version loaded *before* the binding is swapped, so a
request in flight finishes on the version it started with and none waits or fails.
Loaded models are shared by ``(name, version, sha256)``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from omfs.errors import IntegrityError, NotFoundError, UsageError
from omfs.names import check_name, split_selector

__all__ = ["Loaded", "Registry", "parse_routes", "parse_shadows", "selector_text"]

log = logging.getLogger("omfs.serve")
#: canary draws from a generator of omfs's own, not the global one a user may have seeded
_split = random.Random()

#: ``(name, selector)``: selector None (latest), a version number or a tag
Key = tuple[str, int | str | None]


@dataclass(frozen=True, eq=False)
class Loaded:
    """One version of a model, loaded: what a request runs."""

    name: str
    version: int
    sha256: str
    model: Any
    #: the column names the model was fitted with (scikit-learn's ``feature_names_in_``)
    features: tuple[str, ...] | None
    #: how many columns it expects (``n_features_in_``), when it says
    n_features: int | None

    @property
    def label(self) -> str:
        """``name@vN``."""
        return f"{self.name}@v{self.version}"


def selector_text(name: str, selector: int | str | None) -> str:
    """``name``, ``name@v3`` or ``name@prod``."""
    if selector is None:
        return name
    return f"{name}@v{selector}" if isinstance(selector, int) else f"{name}@{selector}"


def parse_routes(items: list[str] | None) -> dict[str, list[tuple[int | str | None, float]]]:
    """``["m=prod:90,candidate:10"]`` as ``{"m": [("prod", 90.0), ("candidate", 10.0)]}``."""
    routes: dict[str, list[tuple[int | str | None, float]]] = {}
    for item in items or []:
        name, sep, rest = item.partition("=")
        if not sep or not rest:
            raise UsageError(f"--route {item!r}: use NAME=TAG:WEIGHT,TAG:WEIGHT")
        name = check_name(name.strip())
        choices = []
        for part in rest.split(","):
            tag, _, weight = part.strip().partition(":")
            try:
                share = float(weight)
            except ValueError:
                share = -1.0
            if share < 0 or not tag:
                raise UsageError(f"--route {item!r}: {part!r} is not TAG:WEIGHT (e.g. prod:90)")
            choices.append((split_selector(f"{name}@{tag}")[1], share))
        if sum(w for _, w in choices) <= 0:
            raise UsageError(f"--route {item!r}: the weights add up to 0")
        routes[name] = choices
    return routes


def parse_shadows(items: list[str] | None) -> dict[str, int | str | None]:
    """``["m=challenger"]`` as ``{"m": "challenger"}``."""
    shadows: dict[str, int | str | None] = {}
    for item in items or []:
        name, sep, tag = item.partition("=")
        if not sep or not tag.strip():
            raise UsageError(f"--shadow {item!r}: use NAME=TAG (e.g. m=challenger)")
        name = check_name(name.strip())
        shadows[name] = split_selector(f"{name}@{tag.strip()}")[1]
    return shadows


class Registry:
    """Bindings from selectors to loaded versions of one model store, kept current."""

    def __init__(
        self,
        store: Any,
        served: list[str] | None = None,
        routes: dict[str, list[tuple[int | str | None, float]]] | None = None,
        poll: float = 0.2,
        recheck: float = 5.0,
    ):
        self.store = store
        #: name -> the selector a bare name means (None: every model, latest by default)
        self.served: dict[str, int | str | None] | None = None
        if served is not None:
            self.served = dict(split_selector(s) for s in served)
        self.routes = routes or {}
        self.bindings: dict[Key, Loaded] = {}
        self._parsed: dict[str, Key] = {}
        self._models: dict[tuple[str, int, str], Any] = {}
        self._hints: dict[str, bytes | None] = {}
        #: model name -> how many times a new version failed its integrity check on reload
        self.reload_failures: dict[str, int] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.poll, self.recheck = poll, recheck

    # -- which selector a request means ---------------------------------------------------
    def key(self, spec: str) -> Key:
        """The binding key of a request's ``name[@tag|@vN]``: a bare name follows its
        route (canary weights) or the served selector. NotFoundError for a model this
        server does not serve."""
        parsed = self._parsed.get(spec)
        if parsed is None:
            parsed = split_selector(spec)  # validates the name: cached, it is not free
            if len(self._parsed) < 10_000:
                self._parsed[spec] = parsed
        name, selector = parsed
        if self.served is not None and name not in self.served:
            raise NotFoundError(f"Model {name!r} is not served here; served: {sorted(self.served)}")
        if selector is None and name in self.routes:
            choices = self.routes[name]
            selector = _split.choices([c for c, _ in choices], [w for _, w in choices])[0]
        elif selector is None and self.served is not None:
            selector = self.served[name]
        return name, selector

    def names(self) -> list[str]:
        """The models this server answers for."""
        return sorted(self.served) if self.served is not None else self.store.list()

    def single(self) -> str | None:
        """The one model served, when exactly one is (MLflow's ``/invocations``)."""
        if self.served is not None and len(self.served) == 1:
            return next(iter(self.served))
        return None

    # -- resolving ---------------------------------------------------------------------
    def resolve(self, key: Key) -> Loaded:
        """The binding of ``key``, resolved and loaded now if it is new (blocking: call it
        from a thread)."""
        with self._lock:
            found = self.bindings.get(key)
            if found is not None:
                return found
            name = key[0]
            if name not in self._hints:
                self._hints[name] = self._read_hint(name)  # before the head: no move missed
            loaded = self._load(key)
            self.bindings[key] = loaded
            return loaded

    def _load(self, key: Key) -> Loaded:
        name, selector = key
        meta = self.store.metadata(selector_text(name, selector))
        ident = (name, meta.version, meta.info["sha256"])
        model = self._models.get(ident)
        if model is None:
            model = self.store.get(name, version=meta.version)
            self._models[ident] = model
        features = getattr(model, "feature_names_in_", None)
        n_features = getattr(model, "n_features_in_", None)
        return Loaded(
            name=name,
            version=meta.version,
            sha256=meta.info["sha256"],
            model=model,
            features=tuple(str(f) for f in features) if features is not None else None,
            n_features=int(n_features) if isinstance(n_features, int) else None,
        )

    def _read_hint(self, name: str) -> bytes | None:
        try:
            data: bytes = self.store.storage.read_bytes(self.store.object_log(name).hint_key)
            return data
        except FileNotFoundError:
            return None

    # -- following the logs --------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="omfs-serve-watch")
            self._thread.daemon = True
            self._thread.start()

    def preload(self) -> None:
        """Load every model's latest version in a background thread, so the first request
        for each is as fast as the next (failures are logged; requests report them)."""

        def load_all() -> None:
            for name in self.store.list():
                if self._stop.is_set():
                    return
                try:
                    self.resolve((name, None))
                except Exception as exc:
                    log.warning("cannot preload model %r: %s", name, exc)

        threading.Thread(target=load_all, name="omfs-serve-preload", daemon=True).start()

    def stop(self) -> None:
        """Stop the watcher thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        last_full = time.monotonic()
        while not self._stop.wait(self.poll):
            full = time.monotonic() - last_full >= self.recheck
            if full:
                last_full = time.monotonic()
            for name in list(self._hints):
                try:
                    hint = self._read_hint(name)
                except Exception as exc:  # storage away for a moment: keep serving
                    log.warning("cannot read the log of model %r: %s", name, exc)
                    continue
                if full or hint != self._hints.get(name):
                    self._hints[name] = hint
                    self.refresh(name)

    def refresh(self, name: str) -> None:
        """Resolve every binding of model ``name`` again; a new version is loaded before
        its binding is swapped. A new version that fails its integrity check is not: the
        binding stays on the version it had (logged, counted in :attr:`reload_failures`). A
        binding that no longer resolves otherwise is forgotten, so its next request reports
        why."""
        with self._lock:
            for key in [k for k in self.bindings if k[0] == name]:
                old = self.bindings.get(key)
                try:
                    new = self._load(key)
                except IntegrityError as exc:
                    self.reload_failures[name] = self.reload_failures.get(name, 0) + 1
                    kept = f"version {old.version}" if old else "nothing"
                    log.error("%s: keeping %s: %s", selector_text(*key), kept, exc)
                    continue
                except Exception as exc:
                    log.warning("%s no longer resolves: %s", selector_text(*key), exc)
                    self.bindings.pop(key, None)
                    continue
                if old is None or (new.version, new.sha256) != (old.version, old.sha256):
                    self.bindings[key] = new
                    log.info("%s now answers with version %d", selector_text(*key), new.version)
            used = {(b.name, b.version, b.sha256) for b in self.bindings.values()}
            self._models = {k: m for k, m in self._models.items() if k in used}
