"""Examples that guard versions: before a new version of a script is accepted, each
example the script carries runs in the sandbox (as an untrusted run, no secrets) and
its result or exit code is compared with the expected one."""

import json

from django.conf import settings

from scripts.hooks import ExampleOutcome
from scripts.inspection.requirements import merge_requirements

EXAMPLE_TIMEOUT_SECONDS = 60


def examples_guard(*, script, source, filename, inspection, examples) -> list[ExampleOutcome]:
    """Run each of ``examples`` against ``source`` (inspected as ``inspection``) and say
    how it went. Never raises for what the script does."""
    from executions import runner

    requirements = merge_requirements(
        list(inspection.requirements), list(script.extra_requirements or [])
    )
    timeout = min(
        script.timeout_seconds or settings.RUN_TIMEOUT_SECONDS,
        getattr(settings, "EXAMPLE_TIMEOUT_SECONDS", EXAMPLE_TIMEOUT_SECONDS),
    )
    outcomes = []
    for example in examples:
        command = inspection.call_style == "argv"
        spec = runner.RunSpec(
            run_id=f"example-{script.pk}",
            source=source,
            filename=filename,
            call_style=inspection.call_style,
            inputs={} if command else dict(example.inputs or {}),
            argv=[str(a) for a in (example.args or [])] if command else [],
            requirements=requirements,
            input_files=[],
            limits=runner.limits_for(
                timeout_seconds=timeout,
                memory_mb=script.memory_mb,
                network=script.network_allowed,
            ),
        )
        log: list[str] = []
        with runner.run_script(spec, on_log=log.append) as outcome:
            outcomes.append(_judge(example, outcome, "".join(log)))
    return outcomes


def _judge(example, outcome, log: str) -> ExampleOutcome:
    exit_code = outcome.exit_code if outcome.exit_code is not None else -1
    if example.expected_exit_code is not None and exit_code != example.expected_exit_code:
        return ExampleOutcome(
            example.name,
            False,
            f"exit code {exit_code}, expected {example.expected_exit_code}; "
            f"{outcome.error_message or 'no error'}; log tail: {log[-500:]}",
            expected=example.expected_exit_code,
            got=exit_code,
        )
    if example.expected_result is not None:
        if outcome.status != "succeeded":
            return ExampleOutcome(
                example.name,
                False,
                f"{outcome.error_code}: {outcome.error_message}; log tail: {log[-500:]}",
                expected=example.expected_result,
                got=None,
            )
        if outcome.result != example.expected_result:
            got = json.dumps(outcome.result, sort_keys=True, default=str)[:1000]
            return ExampleOutcome(
                example.name,
                False,
                f"result {got}, expected "
                f"{json.dumps(example.expected_result, sort_keys=True)[:1000]}",
                expected=example.expected_result,
                got=outcome.result,
            )
    return ExampleOutcome(example.name, True, f"passed in {outcome.duration_seconds:.2f} s")
