"""pytest plugin of dropblock-conformance (entry point ``dropblock_conformance`` in group ``pytest11``).

Every planned check instance (implementation x check x device x dtype x dims) is one pytest item of
``verification/test_conformance.py``; ``dropblock-verify run`` drives the same items through ``pytest.main``,
so the command line and a project's own pytest run cannot disagree::

    pytest --pyargs verification --dropblock-impl torchvision --dropblock-impl mypkg.layers:drop_block

Isolation: with ``--dropblock-impl`` the items run in pytest-xdist workers (``-n 1`` unless ``-n`` says
otherwise), never in the process that records the results; an implementation is first loaded in a child
process (:mod:`verification.probe`) to learn what it declares. Each item has a hard time limit
(``--dropblock-timeout``, pytest-timeout's ``thread`` method, which also stops C code: the worker ends and
is replaced). A worker that dies records the item it was running as ``crashed`` (with its exit status or
signal) or ``timeout``, and the run goes on with a fresh worker. torch's global state is restored before
every item (:class:`verification.worker.GlobalState`). Items that never ran are recorded as ``not-run``
and make the run fail.

The plugin registers its options and nothing else until a ``--dropblock-*`` run option is given or
``verification/test_conformance.py`` is collected: a plain ``pytest`` in a project that has this package
installed imports neither torch nor the suite, and a broken or shadowed install gives one warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from .recording import register_recorder

__all__ = ["STATE"]

_HELP_IMPL = ("implementation under test (repeatable): reference[:preset], torchvision, timm, timm-legacy, "
              "original, package.module:attr or FRAMEWORK:package.module:attr(...)@layout")
_WORKER_KEY = "dropblock_run"


class _State:
    """Controller or worker state of one pytest session."""

    def __init__(self) -> None:
        self.options: Any = None
        self.infos: dict[str, dict[str, Any] | None] = {}
        self.probes: dict[str, dict[str, Any]] = {}
        self.plan: Any = None
        self.by_id: dict[str, Any] = {}
        self.sink: Any = None
        self.recorded: set[str] = set()
        self.started: dict[str, float] = {}
        self.exit_codes: dict[str, int | None] = {}
        self.listeners: list[Any] = []
        self.distributed = False
        self.global_state: Any = None

    def record(self, item: Any, result: dict[str, Any]) -> None:
        if item.id in self.recorded:
            return
        self.recorded.add(item.id)
        rec = {"kind": "check", "implementation": item.spec, "key": item.key, **result}
        if self.sink is not None:
            self.sink.write(rec)
        for listener in self.listeners:
            listener(item, rec)


STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dropblock-conformance", "DropBlock conformance suite")
    group.addoption("--dropblock-impl", action="append", metavar="SPEC", help=_HELP_IMPL)
    group.addoption("--dropblock-profile", metavar="PROFILE", help="declared law to test against, instead of "
                    "each implementation's own")
    group.addoption("--dropblock-device", metavar="LIST", help="comma-separated devices (cpu,cuda; default cpu)")
    group.addoption("--dropblock-dtype", metavar="LIST", help="comma-separated dtypes (default "
                    "float32,float16,bfloat16)")
    group.addoption("--dropblock-budget", choices=("smoke", "standard", "thorough"), help="sample-size budget "
                    "(default standard)")
    group.addoption("--dropblock-alpha", type=float, metavar="A", help="false-alarm budget per implementation "
                    "(default 1e-3)")
    group.addoption("--dropblock-seed", type=int, metavar="N", help="base seed (default 0)")
    group.addoption("--dropblock-checks", metavar="LIST", help="comma-separated check ids or families")
    group.addoption("--dropblock-timeout", type=float, metavar="S", help="hard time limit of one check in "
                    "seconds (default 120)")
    group.addoption("--dropblock-job", metavar="FILE", help="run the options of a job file (dropblock-verify plan)")
    group.addoption("--dropblock-results", metavar="FILE", help="stream one JSON line per result here")
    group.addoption("--dropblock-expectations", metavar="FILE", help="known deviations: checks expected to fail "
                    "(xfail) or not to run (skip); default: [tool.dropblock-conformance] expectations in "
                    "pyproject.toml")


def _wanted(config: pytest.Config) -> bool:
    opt = config.option
    return bool(getattr(opt, "dropblock_impl", None) or getattr(opt, "dropblock_job", None))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With an implementation under test, run the items in xdist workers unless ``-n`` was given."""
    if not _wanted(config) or hasattr(config, "workerinput"):
        return
    opt = config.option
    if getattr(opt, "numprocesses", None) is None and _has_xdist(config):
        opt.numprocesses = 1
        # pytest-xdist's own hook of this name may have run already (the order of plugins decides): set up
        # what it sets up for -n, as it does
        opt.tx = ["popen"] * opt.numprocesses
    if getattr(opt, "numprocesses", None):
        if getattr(opt, "dist", "no") == "no":
            opt.dist = "load"  # its recovery from a crashed worker is the one pytest-xdist tests best
        if getattr(opt, "maxworkerrestart", None) is None:
            opt.maxworkerrestart = "100000"  # each crash costs the item it was running, not the run


def _has_xdist(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("xdist") or config.pluginmanager.hasplugin("xdist.plugin")


def _options_from_config(config: pytest.Config) -> Any:
    from .planning import RunOptions, RunSetupError

    opt = config.option
    if opt.dropblock_job:
        try:
            with open(opt.dropblock_job, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(f"--dropblock-job {opt.dropblock_job!r}: {exc}") from None
        try:
            return RunOptions.from_dict(data.get("options", data) if isinstance(data, dict) else data)
        except (RunSetupError, AttributeError) as exc:
            raise pytest.UsageError(f"--dropblock-job {opt.dropblock_job!r}: {exc}") from None
    fields: dict[str, Any] = {"impls": list(opt.dropblock_impl or ["reference"])}

    def split(text: str | None) -> list[str] | None:
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    fields["expectations"] = _expectations_of(config)
    for name, value in (("profile", opt.dropblock_profile), ("devices", split(opt.dropblock_device)),
                        ("dtypes", split(opt.dropblock_dtype)), ("budget", opt.dropblock_budget),
                        ("alpha", opt.dropblock_alpha), ("seed", opt.dropblock_seed),
                        ("checks", split(opt.dropblock_checks)), ("timeout", opt.dropblock_timeout)):
        if value is not None:
            fields[name] = value
    try:
        return RunOptions(**fields)
    except RunSetupError as exc:
        raise pytest.UsageError(f"dropblock: {exc}") from None


def _expectation_counts(options: Any, state: _State) -> list[dict[str, Any]]:
    """Each expectation with the number of planned checks it covers; a warning for each that covers none."""
    from .expectations import Expectation

    out = []
    ids = [it.id for it in state.plan.items if it.check != "load"]
    for e in options.expectations or []:
        n = sum(Expectation(**e).matches(i) for i in ids)
        if n == 0:
            warnings.warn(f"dropblock: expectation {e['pattern']!r} ({e['kind']}) matches no planned check",
                          stacklevel=1)
        out.append({**e, "matched": n})
    return out


def _job_probes(config: pytest.Config) -> dict[str, Any]:
    """Probe results handed over by ``dropblock-verify run`` in its job file (it has loaded the
    implementations already); empty for a job file written by ``plan`` or no job file."""
    if not config.option.dropblock_job:
        return {}
    with open(config.option.dropblock_job, encoding="utf-8") as fh:
        data = json.load(fh)
    probes = data.get("probes") if isinstance(data, dict) else None
    return probes if isinstance(probes, dict) else {}


def _check_not_shadowed() -> None:
    """The suite's own ``dropblock`` package, not another module of that name earlier on the path (the
    original PyPI package, a project's own module): one clear error instead of a failure deep inside."""
    import importlib.util

    spec = importlib.util.find_spec("dropblock")
    ours = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dropblock")
    found = spec.origin if spec is not None else None
    if found is None or os.path.dirname(os.path.abspath(found)) != ours:
        raise pytest.UsageError(f"dropblock: the module 'dropblock' found first is {found!r}, which shadows the "
                                f"reference of dropblock-conformance ({ours}); remove it from the path (or "
                                "install the original package under another name) to run the suite")


def _expectations_of(config: pytest.Config) -> list[dict[str, str]] | None:
    """``--dropblock-expectations FILE``, else the file ``[tool.dropblock-conformance]`` names in the rootdir's
    pyproject.toml, else None."""
    from .expectations import ExpectationError, from_pyproject, read_expectations

    try:
        path = config.option.dropblock_expectations or from_pyproject(str(config.rootpath))
        return None if path is None else [e.to_dict() for e in read_expectations(path)]
    except ExpectationError as exc:
        raise pytest.UsageError(f"dropblock: {exc}") from None


def _setup_controller(config: pytest.Config, state: _State) -> None:
    _check_not_shadowed()
    from .planning import RunSetupError, plan_run
    from .runner import check_run_options, implementation_record, probe_run, run_info

    options = state.options
    try:
        check_run_options(options)
        state.probes = state.probes or probe_run(options)
    except RunSetupError as exc:
        raise pytest.UsageError(f"dropblock: {exc}") from None
    state.infos = {s: (p["info"] if p["status"] == "ok" else None) for s, p in state.probes.items()}
    state.plan = plan_run(options, state.infos)
    state.by_id = {it.id: it for it in state.plan.items}
    expectations = _expectation_counts(options, state)
    if config.option.dropblock_results:
        from .engine import ResultSink

        state.sink = ResultSink(config.option.dropblock_results, truncate=True)
        info = run_info(options, os.environ.get("DROPBLOCK_COMMAND") or "pytest")
        if expectations:
            info["expectations"] = expectations
        state.sink.write({"kind": "run", **info})
        for spec in options.impls:
            state.sink.write(implementation_record(spec, state.probes[spec], state.plan))
    register_recorder(config, state, with_xdist=_has_xdist(config))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dropblock: a check instance of the DropBlock conformance suite")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKER_KEY in workerinput:
        state = _State()
        _load_worker_state(state, workerinput[_WORKER_KEY])
        config.stash[STATE] = state
        return
    if not _wanted(config):
        return
    state = _State()
    state.options = _options_from_config(config)
    state.probes = _job_probes(config)
    state.distributed = bool(getattr(config.option, "numprocesses", 0))
    config.stash[STATE] = state
    if not config.getoption("collectonly", False) and not state.distributed:
        warnings.warn("dropblock: -n 0 runs the implementations under test in the process that records the "
                      "results (no isolation from crashes and hangs)", stacklevel=1)
    if state.distributed:
        _workers_elsewhere(config)
    _setup_controller(config, state)


def _workers_elsewhere(config: pytest.Config) -> None:
    """Start the workers without the working folder on their import path (``PYTHONSAFEPATH``, Python 3.11+): a
    folder there named like one of our packages (``reports/``, ``verification/``) would shadow it."""
    config.option.tx = [f"{tx}//env:PYTHONSAFEPATH=1" if tx == "popen" else tx for tx in (config.option.tx or [])]


def _load_worker_state(state: _State, payload: str) -> None:
    data = json.loads(payload)
    import torch

    # workers share the machine's cores: torch's own threads (OpenMP, which spin while they wait) in
    # every worker would take each other's cores
    torch.set_num_threads(max(1, int(data.get("threads", 1))))
    from .planning import RunOptions, plan_run
    from .worker import GlobalState

    state.options = RunOptions.from_dict(data["options"])
    state.infos = data["infos"]
    state.probes = data["probes"]
    state.plan = plan_run(state.options, state.infos)
    state.by_id = {it.id: it for it in state.plan.items}
    state.global_state = GlobalState.capture()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller): hand the run's options and the implementations' declarations to a new worker."""
    state = node.config.stash.get(STATE, None)
    if state is not None and state.options is not None:
        workers = max(1, int(getattr(node.config.option, "numprocesses", 1) or 1))
        threads = max(1, _cores() // workers)
        node.workerinput[_WORKER_KEY] = json.dumps({"options": state.options.to_dict(), "infos": state.infos,
                                                    "probes": state.probes, "threads": threads})


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _state_for_collection(config: pytest.Config) -> _State:
    state = config.stash.get(STATE, None)
    if state is None:  # ``pytest --pyargs verification`` without options: the reference, in this process
        state = _State()
        state.options = _options_from_config(config)
        config.stash[STATE] = state
        _setup_controller(config, state)
    if state.global_state is None:
        from .worker import GlobalState

        state.global_state = GlobalState.capture()
    return state


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dropblock_item" not in metafunc.fixturenames:
        return
    state = _state_for_collection(metafunc.config)
    distributed = hasattr(metafunc.config, "workerinput") or state.distributed
    params = [pytest.param(it, id=it.id, marks=[
        pytest.mark.timeout(state.options.timeout, method="thread" if distributed else "signal", func_only=True),
        pytest.mark.dropblock]) for it in state.plan.items]
    metafunc.parametrize("dropblock_item", params)


@pytest.fixture
def dropblock_run(request: pytest.FixtureRequest, dropblock_item: Any) -> Any:
    """Runs a planned item in this process, records its result on the test report and turns its verdict
    into the test's outcome.

    The implementation is loaded here, in the item's set-up, outside the check's time limit (which covers
    the check itself); a load that runs past :data:`verification.runner.LOAD_TIMEOUT` ends the worker.
    """
    state = request.config.stash[STATE]
    if dropblock_item.check != "load":
        from .runner import LOAD_TIMEOUT
        from .worker import LoadFailed, adapter_for

        # a load that fails is recorded by the check as an error
        with _watchdog(max(LOAD_TIMEOUT, state.options.timeout), request.config), contextlib.suppress(LoadFailed):
            adapter_for(dropblock_item.spec, **state.options.load_kwargs())

    def run(item: Any) -> None:
        if item.check == "load":
            probe = state.probes.get(item.spec) or {"status": "error", "message": "not loaded in the controller"}
            pytest.fail(f"{item.spec}: {probe['status']}: {probe['message']}", pytrace=False)
        from .expectations import apply, match
        from .worker import run_item, skipped

        expected = match(state.options.expectations or [], item.id)
        if expected is not None and expected.kind == "skip":
            result = skipped(item, f"skipped by expectation {expected.pattern!r}: {expected.reason}")
        else:
            state.global_state.restore()
            result = apply(expected, run_item(item, state.options).to_dict())
        request.node.user_properties.append(("dropblock_result", json.dumps(result)))
        verdict, message = result["verdict"], result["message"]
        if verdict == "skip":
            pytest.skip(message)
        if verdict == "xfail":
            pytest.xfail(message)
        if verdict != "pass":
            pytest.fail(f"{verdict}: {message}", pytrace=False)

    return run


@contextlib.contextmanager
def _watchdog(seconds: float, config: pytest.Config) -> Iterator[None]:
    """End this process (exit status 1, as pytest-timeout's thread method) unless the block finishes within
    ``seconds``: in a worker it is replaced and the item recorded as timed out. Only in xdist workers."""
    if not hasattr(config, "workerinput"):
        yield
        return
    done = threading.Event()

    def expire() -> None:
        if not done.wait(seconds):
            sys.stderr.write(f"dropblock: loading the implementation ran past {seconds:g} s; ending the worker\n")
            sys.stderr.flush()
            os._exit(1)

    threading.Thread(target=expire, daemon=True).start()
    try:
        yield
    finally:
        done.set()
