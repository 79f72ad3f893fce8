"""The handle of one submitted task (:class:`TaskResult`): its value, status and cancel,
through its Dask future while this process holds it, else through its records."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

from omfs.compute.claims import cancel_task
from omfs.compute.credentials import explained
from omfs.compute.records import record_lost, task_status
from omfs.errors import MissingCredentialsError, TaskCancelledError

if TYPE_CHECKING:
    from omfs.storage import Storage

__all__ = ["TaskResult"]


class TaskResult:
    """The outcome of a task: ``get(timeout=None)`` waits for it; ``id`` names it for
    ``om.runtime.result(id)`` / ``status(id)`` in any process; ``future`` is the Dask
    future (None in local mode). Errors raised by the task are raised by ``get``.

    ``cancel()`` stops the task from writing; a task that writes (fit, or a result stored
    with ``rName``) checks a record in the context right before it writes, so after a
    successful ``cancel()`` nothing of it is ever written, even once this process is gone.
    (Model code already running keeps its worker's thread until it returns.)
    """

    def __init__(
        self,
        future: Any = None,
        *,
        value: Any = None,
        error: BaseException | None = None,
        description: str = "",
        guard: bool = False,
        forget: Any = None,
        id: str | None = None,
        storage: Storage | None = None,
        advice: Callable[[], str | None] | None = None,
        about: dict[str, Any] | None = None,
    ):
        self.future = future
        self._value = value
        self._error = error
        self.description = description
        self._guard = guard  # it writes: cancel claims it first (omfs.compute.claims)
        self._forget = forget  # called once cancelled: the exit no longer waits for it
        #: the task's id (its records live under ``_tasks/ID.*`` of the context)
        self.id = id
        self._storage = storage
        self._advice = advice  # why the workers lack credentials this process has
        self._about = about  # its submitted record: object, action, route

    def get(self, timeout: float | None = None) -> Any:
        """The task's result; raises what the task raised, or TimeoutError after
        ``timeout`` seconds (the task goes on running: call ``get`` again or ``cancel``)."""
        if self.future is not None:
            from distributed import TimeoutError as DaskTimeout

            try:
                return self.future.result(timeout=timeout)
            except CancelledError:  # Dask's FutureCancelledError: say it as by id
                raise TaskCancelledError(f"{self.description} was cancelled.") from None
            except (TimeoutError, DaskTimeout):
                if self.future.status in ("finished", "error"):
                    return self.future.result()
                raise TimeoutError(
                    f"{self.description} did not finish within {timeout:g} s; it goes on "
                    "running. Call get() again to wait for it, or cancel() to stop it."
                ) from None
            except MissingCredentialsError as exc:
                raise explained(exc, self._advice) from None
            except Exception as exc:
                if self.future.status == "error" and self.id and self._storage is not None:
                    record_lost(self._storage, self.id, exc, self._about)  # workers died
                raise
        if self._error is not None:
            raise self._error
        return self._value

    def done(self) -> bool:
        return self.future.done() if self.future is not None else True

    def status(self) -> str:
        """``pending``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        if self.future is None:
            return "failed" if self._error is not None else "succeeded"
        if self.future.status == "finished":
            return "succeeded"
        if self.future.status == "cancelled":
            return "cancelled"
        if self.future.status == "error":
            return "failed"
        if self.id is not None and self._storage is not None:
            return task_status(self._storage, self.id)
        return "pending"

    def cancel(self) -> bool:
        """Stop the task. True: it will write nothing. False: it had already finished or
        begun to write; ``get()`` returns its result."""
        if self.future is None or self.future.done():
            return False
        if self.id is None or self._storage is None:
            self.future.cancel(force=True)
        elif not cancel_task(self.future, self._storage, self.id, self._guard):
            return False
        if self._forget is not None:
            self._forget()
        return True

    def __repr__(self) -> str:
        state = (
            self.future.status
            if self.future is not None
            else ("error" if self._error else "finished")
        )
        return f"<TaskResult {self.id} {self.description} {state}>"
