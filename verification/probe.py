"""Loading implementations in a separate process: what each one declares, or why it cannot be loaded.

Loading an implementation runs its code (its module is imported, its adapter built), and that code may
crash the process, call ``sys.exit``, hang or print. The controller of a run never does it itself: it asks
a child process (``python -m verification.probe``) to load every requested spec in turn and to write one
JSON line per spec to a file. A spec in flight when the child dies or runs past ``timeout`` is recorded as
``crashed`` (with the exit status or signal) or ``timeout``, and a fresh child goes on with the specs left.

The result of a successful load is the adapter's :meth:`~verification.adapters.Adapter.info`, which is all
the planning of a run needs (name, version, declared profile, capabilities); the checks themselves run in
pytest-xdist workers (:mod:`verification.plugin`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Probe", "Probes", "ProbeResult", "probe_specs", "exit_description", "child_command"]

#: Probe statuses: ``ok``, ``unavailable`` (not installed here), ``spec-error`` (malformed or unknown spec,
#: unknown profile), ``error`` (loading raised or exited), ``crashed`` (the process died), ``timeout``.
STATUSES = ("ok", "unavailable", "spec-error", "error", "crashed", "timeout")


@dataclass
class ProbeResult:
    """Outcome of loading one spec in the child process."""

    spec: str
    status: str
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    install: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "status": self.status, "message": self.message, "info": self.info,
                "install": self.install}


def exit_description(returncode: int | None) -> str:
    """``"killed by signal 11 (SIGSEGV)"`` or ``"exit status 0"`` for a child's return code."""
    if returncode is None:
        return "exit status unknown"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exit status {returncode}"


def child_command(module: str, *args: str) -> list[str]:
    """``python -m module args`` without the current folder in front of ``sys.path`` (``-P``, Python 3.11+),
    so that a folder named like one of our packages (``reports/``) in the working directory shadows nothing;
    user code comes from installed packages or ``PYTHONPATH``, as for the ``dropblock-verify`` script."""
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *flags, "-m", module, *args]


def _load_one(spec: str, profile: str | None, contract: str | None = None) -> ProbeResult:
    from .adapters import AdapterSpecError, AdapterUnavailable, load_adapter
    from .text import clean_text

    try:
        adapter = load_adapter(spec, profile=profile, contract=contract)
        return ProbeResult(spec, "ok", info=adapter.info())
    except AdapterSpecError as exc:
        return ProbeResult(spec, "spec-error", clean_text(str(exc)))
    except AdapterUnavailable as exc:
        return ProbeResult(spec, "unavailable", clean_text(str(exc)), install=exc.install)
    except ValueError as exc:
        return ProbeResult(spec, "spec-error", clean_text(f"{spec!r}: {exc}"))
    except SystemExit as exc:
        return ProbeResult(spec, "error", f"loading {spec!r} called sys.exit({exc.code!r})")
    except BaseException as exc:  # the implementation's import may raise anything
        text = clean_text(str(exc)).strip().splitlines()
        return ProbeResult(spec, "error", f"loading {spec!r} raised {type(exc).__name__}"
                                          + (f": {text[-1]}" if text else ""))


def _child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m verification.probe")
    p.add_argument("--out", required=True)
    p.add_argument("--profile")
    p.add_argument("--contract")
    p.add_argument("specs", nargs="*")
    args = p.parse_args(argv)
    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND)
    for spec in args.specs:
        os.write(fd, (json.dumps({"spec": spec, "event": "start"}) + "\n").encode())
        result = _load_one(spec, args.profile, args.contract)
        line = json.dumps({"event": "done", **result.to_dict()}, default=str)
        os.write(fd, (line + "\n").encode())
    os.close(fd)
    os._exit(0)  # leave at once: threads or atexit handlers of the loaded code must not hold the child


def _read(path: str) -> tuple[dict[str, ProbeResult], str | None]:
    done: dict[str, ProbeResult] = {}
    in_flight = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("event") == "start":
                in_flight = rec["spec"]
            elif rec.get("event") == "done":
                rec.pop("event")
                done[rec["spec"]] = ProbeResult(**rec)
                in_flight = None
    return done, in_flight


class Probe:
    """Loading specs in child processes, started at once (:meth:`start`) so that the caller can go on with
    its own work meanwhile; :meth:`results` waits for them."""

    def __init__(self, specs: list[str], *, profile: str | None = None, timeout: float = 120.0,
                 log: str | None = None, contract: str | None = None) -> None:
        self.specs = list(dict.fromkeys(specs))
        self.profile, self.timeout, self.log, self.contract = profile, timeout, log, contract
        self.done: dict[str, ProbeResult] = {}
        self._child: tuple[subprocess.Popen, str, Any] | None = None

    def start(self) -> Probe:
        todo = [s for s in self.specs if s not in self.done]
        if todo and self._child is None:
            fd, path = tempfile.mkstemp(prefix="dropblock-probe-", suffix=".jsonl")
            os.close(fd)
            sink = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
            args = child_command("verification.probe", "--out", path,
                                 *(["--profile", self.profile] if self.profile else []),
                                 *(["--contract", self.contract] if self.contract else []), "--", *todo)
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                    start_new_session=True)
            self._child = (proc, path, sink)
        return self

    def _finish_child(self) -> None:
        """Wait for the running child; record what it loaded, and the spec it died or hung on."""
        assert self._child is not None
        proc, path, sink = self._child
        todo = [s for s in self.specs if s not in self.done]
        started, seen, timed_out = time.monotonic(), 0, False
        try:
            while proc.poll() is None:
                time.sleep(0.02)
                done, _ = _read(path)
                if len(done) != seen:
                    seen, started = len(done), time.monotonic()
                if time.monotonic() - started > self.timeout:
                    timed_out = True
                    _kill_group(proc)
                    break
            proc.wait()
            done, in_flight = _read(path)
        finally:
            if sink is not subprocess.DEVNULL:
                sink.close()
            os.remove(path)
            self._child = None
        self.done.update(done)
        if in_flight is not None and in_flight not in self.done:
            if timed_out:
                self.done[in_flight] = ProbeResult(in_flight, "timeout", f"loading {in_flight!r} did not finish "
                                                   f"within {self.timeout:g} s")
            else:
                self.done[in_flight] = ProbeResult(in_flight, "crashed", f"loading {in_flight!r} ended the process "
                                                   f"({exit_description(proc.returncode)})")
        left = [s for s in todo if s not in self.done]
        if left and left == todo:  # the child ended before it loaded anything: do not loop for ever
            for s in left:
                self.done[s] = ProbeResult(s, "crashed", f"the loader process ended before loading {s!r} "
                                           f"({exit_description(proc.returncode)})")

    def stop(self) -> None:
        """End a child still running (the caller gave up on the results)."""
        if self._child is not None:
            proc, path, sink = self._child
            if proc.poll() is None:
                _kill_group(proc)
            proc.wait()
            if sink is not subprocess.DEVNULL:
                sink.close()
            if os.path.exists(path):
                os.remove(path)
            self._child = None

    def results(self) -> list[ProbeResult]:
        """One :class:`ProbeResult` per spec, in order (waits for the children)."""
        while any(s not in self.done for s in self.specs):
            self.start()
            self._finish_child()
        return [self.done[s] for s in self.specs]


class Probes:
    """Several :class:`Probe` over a split of the specs, running side by side (each child imports torch and
    the implementations it loads: two children load six implementations in about half the time)."""

    def __init__(self, specs: list[str], *, groups: int = 2, **kwargs: Any) -> None:
        specs = list(dict.fromkeys(specs))
        n = max(1, min(groups, len(specs)))
        self.specs = specs
        self.probes = [Probe(specs[i::n], **kwargs) for i in range(n)]

    def start(self) -> Probes:
        for p in self.probes:
            p.start()
        return self

    def stop(self) -> None:
        for p in self.probes:
            p.stop()

    def results(self) -> list[ProbeResult]:
        done = {r.spec: r for p in self.probes for r in p.results()}
        return [done[s] for s in self.specs]


def probe_specs(specs: list[str], *, profile: str | None = None, timeout: float = 120.0,
                log: str | None = None) -> list[ProbeResult]:
    """Load each spec in a child process; one :class:`ProbeResult` per spec, in order.

    ``timeout`` bounds the loading of one spec (seconds, counted from the child's start for the first). The
    child's stdout and stderr go to ``log`` (a file path), or are discarded.
    """
    return Probes(specs, profile=profile, timeout=timeout, log=log).start().results()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(_child_main(sys.argv[1:]))
