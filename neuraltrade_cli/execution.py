"""How a command runs its flow, and how it stops when it is told to.

Running. Small commands (`ingest`, `embed`, `memory maintain`) run their flow's body in this process
(``flow.fn``) unless a Prefect server is configured (``PREFECT_API_URL``), so they answer in seconds
instead of first starting Prefect's temporary server; the nightly always runs as a Prefect flow run.
When the temporary server is needed, it is started here first, so that a server that cannot start is
reported at once with its own last words, instead of after the 90 s start-up limit.

Stopping. SIGINT (Ctrl-C, to the process or its group) and SIGTERM end any command within seconds:
every database write is one transaction, so an abandoned one is rolled back by SQLite and nothing is
half-written; the runs this process started are recorded as ``cancelled``; one line says what was done
and what was not; the exit status is 130 (SIGINT) or 143 (SIGTERM). A second signal ends the process
at once. Work running in this process's own thread is interrupted by an exception, so that its open
transaction rolls back on the way out; work running in a Prefect flow run (worker threads and a
server that the signal may already have stopped) is left to SQLite's rollback, because Prefect's own
teardown would wait minutes on a server that is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

from neuraltrade_cli.output import Failure, errors, ledger, safe

#: Exit status after each signal: 128 + its number, as shells report it.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: How often the start of Prefect's temporary server is checked on.
SERVER_POLL_SECONDS = 0.05
#: Prefect's console log level, which the command raises to CRITICAL unless -v.
CONSOLE_LEVEL_VARIABLE = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
#: The thread that starts Prefect's temporary server.
SERVER_THREAD = "prefect-temporary-server"
#: How long a failed server start may take to wind down before the command reports it.
SERVER_STOP_SECONDS = 5.0


class Interrupted(BaseException):
    """A signal asked the command to stop. A `BaseException`, so no ``except Exception`` swallows it."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class _State:
    received: int | None = None
    in_flow_run: bool = False


def install_signal_handlers() -> None:
    """Make SIGINT and SIGTERM stop the command as the module docstring says (call once, in `main`)."""
    for number in EXIT_STATUS:
        signal.signal(number, _handle)


def _handle(number: int, _frame: FrameType | None) -> None:
    if _State.received is not None:
        os._exit(EXIT_STATUS[signal.Signals(number)])
    _State.received = number
    if _State.in_flow_run:
        stop(number)
    raise Interrupted(number)


def stop(signal_number: int) -> NoReturn:
    """Record this process's unfinished runs as cancelled, say what was done, and exit at once."""
    name = signal.Signals(signal_number).name
    ledger.stop_display()
    cancelled: list[str] = []
    runs = sys.modules.get("tasks.runs")  # only a command that started runs has imported it
    if runs is not None:
        cancelled = runs.cancel_unfinished(name)
    _stop_temporary_server()
    recorded = f"; {len(cancelled)} run(s) recorded as cancelled" if cancelled else ""
    errors.print(
        f"interrupted by {name}: {safe(ledger.describe())}{recorded}. What finished is stored and nothing is "
        "half-written: run the command again to do the rest.",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_STATUS[signal.Signals(signal_number)])


def prefect_server_configured() -> bool:
    """Return whether Prefect has a server to talk to (``PREFECT_API_URL``, or a profile naming one)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def run_flow(flow: Any, *, in_process: bool, **parameters: Any) -> Any:
    """Run `flow` with `parameters`: its body in this process, or as a Prefect flow run."""
    if in_process:
        return flow.fn(**parameters)
    with _flow_run():
        return flow(**parameters)


def run_small_flow(flow: Any, **parameters: Any) -> Any:
    """Run `flow` in process unless a Prefect server is configured (see the module docstring)."""
    return run_flow(flow, in_process=not prefect_server_configured(), **parameters)


@contextmanager
def _flow_run() -> Iterator[None]:
    start_prefect_server()
    _State.in_flow_run = True
    try:
        yield
    finally:
        _State.in_flow_run = False


def start_prefect_server() -> None:
    """Start Prefect's temporary server when no server is configured; fail at once if it dies starting."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return  # a real server, or none allowed: Prefect itself says what is wrong
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.running:
        return
    failures: list[BaseException] = []
    with tempfile.TemporaryFile() as log:
        _start_watching(server, failures, log)
        if not failures:
            return
        log.seek(0)
        cause = _cause(log.read().decode("utf-8", errors="replace"))
    raise Failure(f"Prefect's temporary server could not start: {failures[0]}{f' ({cause})' if cause else ''}")


def _start_watching(server: Any, failures: list[BaseException], log: Any) -> None:
    """Start `server` in a thread with standard error pointed at `log`; stop it if its process dies.

    Prefect's own start-up waits out its whole time limit when the server dies (and restarts it on
    another port when it died of a start-up failure); watching the process reports the death at once.
    The server process inherits standard error, so its traceback lands in `log`, not on the terminal.
    """

    def start() -> None:
        try:
            server.start()
        except BaseException as error:
            failures.append(error)

    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    # The command quiets Prefect's console below CRITICAL; the server it starts must still say why it died.
    quiet = os.environ.pop(CONSOLE_LEVEL_VARIABLE, None)
    thread = threading.Thread(target=start, name=SERVER_THREAD, daemon=True)
    try:
        thread.start()
        while thread.is_alive():
            process = server.server_process
            if process is not None and process.poll() is not None:
                failures.insert(0, RuntimeError(f"it exited with status {process.returncode}"))
                break
            time.sleep(SERVER_POLL_SECONDS)
        if failures:
            server.stop()
            thread.join(timeout=SERVER_STOP_SECONDS)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if quiet is not None:
            os.environ[CONSOLE_LEVEL_VARIABLE] = quiet


def _cause(text: str) -> str:
    """Return the line of a server's output that names its error (the last ``...Error: ...`` line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b.*:", line)]
    return (errors or lines or [""])[-1]


def _stop_temporary_server() -> None:
    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return
    for server in list(module.SubprocessASGIServer._instances.values()):
        process = server.server_process
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=SERVER_STOP_SECONDS)  # reap it: no zombie outlives the command


def guarded(command: Callable[[], None]) -> None:
    """Run the CLI `command` with the signal handlers installed; an interrupt ends it as `stop` says."""
    install_signal_handlers()
    try:
        command()
    except Interrupted as interrupted:
        stop(interrupted.signal_number)
    except KeyboardInterrupt:
        stop(signal.SIGINT)
    except SystemExit as exiting:
        if any(thread.name == SERVER_THREAD and thread.is_alive() for thread in threading.enumerate()):
            # A failed server start still winding down in its daemon thread can hold standard error's
            # lock when the interpreter shuts down, which then aborts (status -6 instead of 1, seen on
            # 2 busy cores): the command's answer is written, so it ends here.
            _stop_temporary_server()  # os._exit skips the exit handlers that would
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exiting.code if isinstance(exiting.code, int) else 1)
        raise
