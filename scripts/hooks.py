"""Hooks the scripts app offers to the apps above it (which it never imports).

``register_run_counter(fn)``: ``fn(script_or_queryset) -> int`` counts runs on record
(executions registers it; the library shows it and reports it on deletion).

``register_version_guard(fn)``: ``fn(*, script, source, filename, inspection,
examples) -> list[ExampleOutcome]`` is called before a new version of a script that
carries examples is written (executions registers the one that runs them in the
sandbox)."""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ExampleOutcome:
    """How one example went: ``passed``, and for people what was expected and got."""

    name: str
    passed: bool
    detail: str
    expected: object = None
    got: object = None


_version_guards: list[Callable[..., list[ExampleOutcome]]] = []


def register_version_guard(guard: Callable[..., list[ExampleOutcome]]) -> None:
    """Add ``guard`` (once) to those run before a version of a script with examples
    is accepted."""
    if guard not in _version_guards:
        _version_guards.append(guard)


def version_guards_run(*, script, source, filename, inspection, examples) -> list[ExampleOutcome]:
    """Every registered guard's outcomes for the candidate source (none registered:
    no outcomes, the version is accepted unchecked)."""
    outcomes: list[ExampleOutcome] = []
    for guard in _version_guards:
        outcomes += guard(
            script=script,
            source=source,
            filename=filename,
            inspection=inspection,
            examples=examples,
        )
    return outcomes


_run_counters: list[Callable[[object], int]] = []


def register_run_counter(counter: Callable[[object], int]) -> None:
    """Add ``counter`` (once): ``counter(script_or_queryset) -> int`` counts the runs on
    record of a script or a queryset of scripts (executions registers its own)."""
    if counter not in _run_counters:
        _run_counters.append(counter)


def run_count(script) -> int:
    """How many runs the registered counters know of ``script`` (a Script or a
    queryset of them); 0 when none is registered."""
    return sum(counter(script) for counter in _run_counters)
