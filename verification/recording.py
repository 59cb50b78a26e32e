"""The plugin's controller side: pytest's test reports turned into result records, and the items that crashed,
timed out or never ran recorded as such (:mod:`verification.plugin` registers it with
:func:`register_recorder`)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

__all__ = ["register_recorder"]


class _Recorder:
    """Controller side: turns test reports into result records (and crashes, time-outs and items that never
    ran into records of their own)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.crash_codes: dict[str, int | None] = {}
        self.started: dict[str, float] = {}

    def _item(self, nodeid: str) -> Any:
        if "[" not in nodeid:
            return None
        return self.state.by_id.get(nodeid[nodeid.index("[") + 1:-1])

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        item = self._item(report.nodeid)
        if item is None or item.check == "load":
            return
        if report.when == "setup" and report.passed:
            self.started[report.nodeid] = time.monotonic()
        result = next((json.loads(str(v)) for k, v in report.user_properties if k == "dropblock_result"), None)
        if result is not None and report.when == "call":
            self.state.record(item, result)
        elif report.failed and report.when not in ("setup", "call", "teardown"):  # xdist: the worker died
            self.state.record(item, self._crash_result(item, report.nodeid))
        elif report.failed and report.when in ("setup", "call"):
            lines = str(report.longrepr).strip().splitlines()
            self.state.record(item, _error_result(item, f"the test harness failed in {report.when}: "
                                                        f"{lines[-1] if lines else ''}"))

    def _crash_result(self, item: Any, nodeid: str) -> dict[str, Any]:
        from .probe import exit_description

        code = self.crash_codes.get(nodeid)
        began = self.started.get(nodeid)
        elapsed = time.monotonic() - began if began is not None else None
        limit = self.state.options.timeout
        if elapsed is not None and elapsed >= limit * 0.98 and code in (1, None):
            return _error_result(item, f"the check ran past its time limit of {limit:g} s and its worker was "
                                       "stopped", "timeout", elapsed)
        took = f" after {elapsed:.1f} s" if elapsed is not None else ""
        return _error_result(item, f"the worker process running the check died{took} ({exit_description(code)})",
                             "crashed", elapsed)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Every planned item without a result is recorded as ``not-run``; the results file is closed. A run
        with an item not run never exits 0."""
        state = self.state
        missing = [it for it in state.plan.items if it.check != "load" and it.id not in state.recorded]
        for it in missing:
            state.record(it, _error_result(it, "planned but not run (the run was interrupted or stopped early)",
                                           "not-run"))
        if state.sink is not None:
            state.sink.write({"kind": "end", "exitstatus": int(session.exitstatus), "not_run": len(missing)})
            state.sink.close()
        if missing and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


class _CrashCodes:
    """xdist (controller): a worker died while running an item; keep its exit status for the record."""

    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder

    @pytest.hookimpl(tryfirst=True)
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:  # noqa: ARG002
        code = None
        try:
            code = report.node.gateway._io.popen.wait(timeout=10)  # execnet's popen gateway: the worker
        except Exception:  # another kind of gateway, or the process could not be waited for
            code = None
        self.recorder.crash_codes[crashitem] = code


def _error_result(item: Any, message: str, verdict: str = "error", seconds: float | None = None) -> dict[str, Any]:
    from .results import CheckResult
    from .text import clean_text

    return CheckResult(id=item.check, verdict=verdict, message=clean_text(message, 2000),  # type: ignore[arg-type]
                       device=item.device, dtype=item.dtype, alpha=item.alpha, seconds=round(seconds or 0.0, 3),
                       details={"dims": item.dims}).to_dict()


def register_recorder(config: pytest.Config, state: Any, with_xdist: bool) -> None:
    """Register the controller's recorder (and, under pytest-xdist, the keeper of dead workers' exit statuses)
    on ``config``; ``state`` is the plugin's run state (``verification.plugin._State``)."""
    recorder = _Recorder(state)
    config.pluginmanager.register(recorder, "dropblock-recorder")
    if with_xdist:
        config.pluginmanager.register(_CrashCodes(recorder), "dropblock-crash-codes")
