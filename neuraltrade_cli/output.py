"""What the command prints: consoles, one-line failures with user text made safe, and progress bars.

Every text that came from outside (a file's header, a path, a database's message) passes `safe` before
it reaches the terminal: control characters are shown escaped and rich's markup is disarmed, so a file
cannot recolour, move or clear the user's terminal.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from typer._click import exceptions as click_errors  # typer parses with its own copy of Click
from typer.core import TyperGroup

from neuraltrade.errors import NeuralTradeError

#: Width of output that goes to a file or a pipe (rich would assume 80 columns and cut the tables' cells).
PIPED_WIDTH = 160


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


console = _console()
errors = _console(stderr=True)


def safe(text: object) -> str:
    """Return `text` fit for the terminal: control characters escaped (``\\x1b``), rich markup disarmed."""
    printable = "".join(
        character if character in "\t" or unicodedata.category(character)[0] != "C" else _escaped(character)
        for character in str(text)
    )
    return escape(printable)


def _escaped(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class Failure(Exception):
    """An expected failure, printed as one line once any live display has stopped."""


def print_failure(message: object) -> None:
    """Print `message` as the command's one error line on stderr."""
    errors.print(f"[bold red]error:[/] {safe(message)}", highlight=False, soft_wrap=True)


def reporting_failures(command: Callable[..., None]) -> Callable[..., None]:
    """Turn a `Failure` raised by `command`, or a `NeuralTradeError` it let through, into one line on
    stderr and exit status 1."""

    @functools.wraps(command)
    def run(*arguments: Any, **options: Any) -> None:
        try:
            command(*arguments, **options)
        # A NeuralTradeError can also come from an import inside the command: a flow module reads its
        # environment (NEURALTRADE_TASK_RUNNER, NEURALTRADE_TRACE_EXPORTER) when it is first imported.
        except (Failure, NeuralTradeError) as failure:
            print_failure(failure)
            raise typer.Exit(code=1) from None

    return run


class OneLineUsageErrors(TyperGroup):
    """The command's group: a malformed command line (an unknown command or option, a value of the wrong
    type, a missing argument) is one line on stderr with exit status 2, not Click's usage block."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        arguments = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(arguments, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            # A process's arguments cannot hold NUL; one given in process would fail deep in a file call.
            for argument in arguments:
                if "\x00" in argument:
                    raise click_errors.UsageError(f"argument {argument!r} holds a NUL character (U+0000)")
            result = super().main(arguments, prog_name, complete_var, False, windows_expand_args, **extra)
        except click_errors.NoArgsIsHelpError:
            return super().main(arguments, prog_name, complete_var, True, windows_expand_args, **extra)
        except click_errors.ClickException as error:
            command = (
                error.ctx.command_path if isinstance(error, click_errors.UsageError) and error.ctx else "neuraltrade"
            )
            print_failure(f"{error.format_message()} (see `{command} --help`)")
            sys.exit(error.exit_code)
        except typer.Abort:
            print_failure("aborted")
            sys.exit(1)
        # Without standalone mode Click returns the exit status a command gave (typer.Exit), else None.
        sys.exit(result if isinstance(result, int) else 0)


@dataclass
class Stage:
    """One stage of a command's work as the progress bars saw it."""

    label: str
    unit: str
    total: int | None
    done: list[str] = field(default_factory=list)


class Ledger:
    """What the running command has finished, stage by stage: the interrupt line reads it."""

    def __init__(self) -> None:
        self._stages: dict[str, Stage] = {}
        self._lock = threading.Lock()
        self._stop: Callable[[], None] | None = None

    def open(self, stages: dict[str, Stage], stop: Callable[[], None]) -> None:
        with self._lock:
            self._stages = stages
            self._stop = stop

    def close(self) -> None:
        with self._lock:
            self._stop = None

    def stop_display(self) -> None:
        """Stop the live progress display, if one runs, so that a last line prints cleanly."""
        with self._lock:
            stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def describe(self) -> str:
        """Say what was done and what was not, e.g. ``ingesting 2/3 files done (A.csv, B.csv); ...``."""
        with self._lock:
            stages = list(self._stages.values())
        if not stages:
            return "nothing had finished yet"
        parts: list[str] = []
        not_started = [stage.label for stage in stages if not stage.done]
        for stage in stages:
            if not stage.done:
                continue
            count = f"{len(stage.done)}/{stage.total}" if stage.total else str(len(stage.done))
            shown = ", ".join(stage.done[:5]) + (", ..." if len(stage.done) > 5 else "")
            parts.append(f"{stage.label} {count} {stage.unit} done ({shown})")
        if not_started:
            parts.append("not started or not finished: " + ", ".join(not_started))
        return "; ".join(parts)


ledger = Ledger()


@contextmanager
def progress_bars(stages: dict[str, tuple[str, str, int | None]]) -> Iterator[None]:
    """Show one progress bar per stage: ``{stage: (label, unit, total or None)}``, fed by the tasks.

    Stages run in the order given: when one starts, every earlier one is finished, so its bar stops
    its clock instead of counting on until the whole command ends. A flow announces a stage's total
    when it knows it (`tasks.progress.expect`).
    """
    from tasks.progress import listening

    with Progress(
        SpinnerColumn(finished_text="[green]✓[/]"),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        order = list(stages)
        seen = {name: Stage(label, unit, total) for name, (label, unit, total) in stages.items()}
        bars = {
            name: progress.add_task(label, total=total, count=_count(0, total, unit), rows=0, start=False)
            for name, (label, unit, total) in stages.items()
        }
        lock = threading.Lock()

        def finish(name: str) -> None:
            task = progress.tasks[bars[name]]
            if not task.finished:
                if not task.started:  # its clock must run for the bar to count as finished
                    progress.start_task(bars[name])
                progress.update(bars[name], total=task.completed, description=seen[name].label)

        def begin(name: str) -> None:
            for earlier in order[: order.index(name)]:
                finish(earlier)
            if not progress.tasks[bars[name]].started:
                progress.start_task(bars[name])

        def listener(name: str, item: str, units: int) -> None:
            if name not in bars:
                return
            with lock:
                begin(name)
                stage = seen[name]
                stage.done.append(item)
                task = progress.tasks[bars[name]]
                progress.update(
                    bars[name],
                    advance=1,
                    rows=task.fields["rows"] + units,
                    count=_count(len(stage.done), stage.total, stage.unit),
                    description=f"{stage.label} {safe(item)}",
                )
                if stage.total is not None and len(stage.done) >= stage.total:
                    progress.update(bars[name], description=stage.label)

        def expectation(name: str, total: int) -> None:
            if name not in bars:
                return
            with lock:
                begin(name)
                stage = seen[name]
                stage.total = total
                progress.update(bars[name], total=total, count=_count(len(stage.done), total, stage.unit))

        ledger.open(seen, progress.stop)
        try:
            with listening(listener, expectation):
                yield
        finally:
            ledger.close()
        with lock:
            for name in order:
                finish(name)


def _count(done: int, total: int | None, unit: str) -> str:
    return f"{done}/{total} {unit}" if total else f"{done} {unit}"
