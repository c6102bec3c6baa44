"""Stop requests: how Ctrl-C, SIGTERM or a Stop button reach a training loop running in another thread.

Signals arrive in the main thread while a tool trains in a worker thread of the graph, so the handlers
only set a flag; the executor's poll loop, which reads it several times a second, stops the training
process group, and the attempt ends as interrupted with its spend captured and its report written.
A second signal raises KeyboardInterrupt as usual; the training watchdog still stops the child then.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

StopCheck = Callable[[], bool]
_EVERYTHING = threading.Event()
_SCOPES: dict[str, threading.Event] = {}
_GUARD = threading.Lock()


def _scope(name: str) -> threading.Event:
    with _GUARD:
        return _SCOPES.setdefault(name, threading.Event())


def request_stop(scope: str | None = None) -> None:
    """Stop the training of one thread (a Stop button), or of the whole process (a signal)."""
    (_scope(scope) if scope else _EVERYTHING).set()


def stop_requested(scope: str | None = None) -> bool:
    return _EVERYTHING.is_set() or (scope is not None and _scope(scope).is_set())


def clear_stop(scope: str | None = None) -> None:
    """Forget a stop once it was carried out, so the next request in that thread or process can run."""
    (_scope(scope) if scope else _EVERYTHING).clear()


def install_signal_handlers() -> Callable[[], None]:
    """Ctrl-C and SIGTERM ask for a stop; the second one raises KeyboardInterrupt. Returns the undo.

    Only the main thread may set handlers; elsewhere (a server's worker) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    clear_stop()

    def handle(signum: int, _frame: object) -> None:
        if _EVERYTHING.is_set():
            raise KeyboardInterrupt
        _EVERYTHING.set()
        name = signal.Signals(signum).name
        print(f"\n{name}: stopping the training and writing the report (again to force)", file=sys.stderr)

    before = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        clear_stop()

    return restore
