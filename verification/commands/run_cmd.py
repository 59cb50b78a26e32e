"""``dropblock-verify run``: the conformance suite on one or more implementations.

The implementations under test run in pytest-xdist worker processes (``--jobs``), never in this process:
see :mod:`verification.runner`. Writes ``OUT/results.jsonl`` (one line per result, as results come, so a
crashed run can still be rendered), ``OUT/report.json`` (atomically, at the end) and the rendered reports.

Exit status: 0 when every planned check of every requested implementation ran and passed; 1 when an
implementation does not conform, could not be loaded, or a check crashed, timed out or did not run; 2 for
bad usage (one line, no traceback); 3 when the output could not be written (a full disk, say); 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
from typing import Any

from ..cli import OutputError, UsageError
from ..planning import BUDGETS, DEVICES, DTYPES, RunOptions, RunSetupError
from .output import OutputFolder, Progress, print_summary

# The run's heavy modules (torch, the catalogue, pytest) are imported once the options are known and the
# implementations are being loaded in a child process meanwhile.

HELP = "run the conformance suite on implementations and write report.json / results.jsonl"


def add_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``plan``."""
    p.add_argument("--impl", action="append", metavar="SPEC",
                   help="implementation spec (repeatable): reference[:preset], torchvision, timm, timm-legacy, "
                        "original, package.module:attr, or FRAMEWORK:package.module:attr(args)@layout; default: "
                        "the reference and every installed peer")
    p.add_argument("--profile", help="declared law to test against, PRESET[+exact][,field=value...] (e.g. "
                                     "'paper,sharing=channel'); default: the adapter's own, 'paper' for custom "
                                     "implementations")
    p.add_argument("--profile-file", metavar="FILE",
                   help="declared law from a TOML file: 'base = PRESET' (default paper) and field = value lines")
    p.add_argument("--contract", help="what the implementations promise to accept, e.g. 'even_block=reject,"
                                      "zero_prob=reject,square_only,dims=2,raises=AssertionError'; default: "
                                      "[tool.dropblock-conformance] contract in ./pyproject.toml, else the "
                                      "implementation's dropblock_contract attribute")
    p.add_argument("--reuse-instance", action="store_true",
                   help="keep one instance of a module class across calls (per drop_prob and block_size), so that "
                        "its state (a warm-up, a schedule) carries over; default: a new module for every call")
    p.add_argument("--schedule", help="with --reuse-instance: the drop_prob schedule the module follows, "
                                      "'linear:start=S,steps=N' (driven by step()) or 'warmup:calls=T' (gamma x "
                                      "min(1, t/T) at the t-th call); checked by S.schedule")
    p.add_argument("--device", default="cpu", help="comma-separated devices (cpu,cuda); default cpu")
    p.add_argument("--dtype", default="float32,float16,bfloat16", help="comma-separated dtypes")
    p.add_argument("--budget", default="standard", choices=BUDGETS, help="sample-size budget")
    p.add_argument("--alpha", type=float, default=1e-3, help="false-alarm budget per implementation")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--checks", help="comma-separated check ids or families (T0,T1,...) to run")
    p.add_argument("--framework", help="the implementations named by --impl are NumPy, JAX, TensorFlow, Keras or "
                                       "Paddle code (numpy, jax, tensorflow, keras, paddle): each --impl becomes "
                                       "FRAMEWORK:IMPL(ARGS)@LAYOUT")
    p.add_argument("--layout", help="with --framework: the layout the implementation takes (nchw, nhwc, ncdhw, "
                                    "ndhwc)")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=EXPR",
                   help="with --framework (repeatable): an argument of the implementation's call, e.g. rate=drop_prob "
                        "or keep_prob=1-drop_prob")
    p.add_argument("--expectations", metavar="FILE",
                   help="known deviations: checks expected to fail (xfail) or not to run (skip), one per line; "
                        "default: [tool.dropblock-conformance] expectations in ./pyproject.toml")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="hard time limit of one check in seconds (its worker is stopped past it); default 120")
    p.add_argument("--config", action="append", default=[], metavar="p=P,k=K,size=HxW",
                   help="extra configuration point for T1.lattice_rate and T2.position_profile (repeatable), "
                        "e.g. p=0.2,k=5,size=56x56 (DxHxW for 3D)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p)
    p.add_argument("--out", default="reports/latest", help="output directory (default reports/latest)")
    p.add_argument("--job", help="run one job file written by 'dropblock-verify plan' (other options ignored)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes running the checks (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--baseline", metavar="DIR",
                   help="compare with a stored run (its folder or report.json): exit 1 when an implementation's "
                        "verdict, inferred law or a check's verdict changed (see 'dropblock-verify diff')")


def _list(name: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"--{name} is empty; give at least one value")
    return items


def options_from_args(args: argparse.Namespace, *, complete: bool = True) -> RunOptions:
    """Run options from the command line; :class:`UsageError` (one line) for a bad value. ``complete=False``
    leaves out the checks that need the catalogue and torch (:func:`verification.runner.check_run_options`)."""
    checks = _list("checks", args.checks) if args.checks is not None else None
    impls = list(args.impl or [])
    if args.framework or args.layout or args.arg:
        impls = _framework_impls(args, impls)
    try:
        options = RunOptions(impls=impls, profile=_profile(args), contract=_contract(args),
                             reuse_instance=bool(getattr(args, "reuse_instance", False)),
                             schedule=getattr(args, "schedule", None), devices=_list("device", args.device),
                             dtypes=_list("dtype", args.dtype), budget=args.budget, alpha=args.alpha, seed=args.seed,
                             checks=checks, timeout=args.timeout, expectations=_expectations(args.expectations),
                             configs=list(args.config) or None)
        if complete:
            from ..runner import check_run_options

            check_run_options(options)
    except RunSetupError as exc:
        raise UsageError(_flag_names(str(exc))) from None
    return options


def _profile(args: argparse.Namespace) -> str | None:
    """``--profile``, or the law of ``--profile-file`` as a law string."""
    path = getattr(args, "profile_file", None)
    if path is None:
        return args.profile
    if args.profile is not None:
        raise UsageError("give --profile or --profile-file, not both")
    from dropblock import read_profile_file

    try:
        return read_profile_file(path).name
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"--profile-file: {exc}") from None


def _contract(args: argparse.Namespace) -> str | None:
    """``--contract``, else the contract of ./pyproject.toml (or None: the implementation's own attribute)."""
    from ..contracts import ContractError, contract_from_pyproject, parse_contract

    try:
        if getattr(args, "contract", None) is not None:
            return parse_contract(args.contract).to_string()
        return contract_from_pyproject(".")
    except ContractError as exc:
        raise UsageError(f"--contract: {exc}") from None


def _expectations(path: str | None) -> list[dict[str, str]] | None:
    """``--expectations FILE``, else the file named in ./pyproject.toml, as plain data (or None)."""
    from ..expectations import ExpectationError, from_pyproject, read_expectations

    try:
        path = path or from_pyproject(".")
        return None if path is None else [e.to_dict() for e in read_expectations(path)]
    except ExpectationError as exc:
        raise UsageError(str(exc)) from None


def _framework_impls(args: argparse.Namespace, impls: list[str]) -> list[str]:
    """Each ``--impl`` as a framework spec (:func:`verification.adapters.frameworks.framework_spec`)."""
    if not args.framework:
        raise UsageError("--layout and --arg go with --framework")
    if not impls:
        raise UsageError("--framework needs --impl package.module:attr")
    from ..adapters import AdapterSpecError
    from ..adapters.frameworks import framework_spec

    try:
        return [framework_spec(args.framework, impl, layout=args.layout, args=args.arg) for impl in impls]
    except AdapterSpecError as exc:
        raise UsageError(str(exc)) from None


def _flag_names(message: str) -> str:
    for field, flag in (("devices", "--device"), ("dtypes", "--dtype"), ("timeout", "--timeout"),
                        ("alpha", "--alpha"), ("seed", "--seed"), ("checks", "--checks")):
        if message.startswith(field):
            return f"{flag}: {message}"
    return message


def load_job(path: str) -> RunOptions:
    """The options of a job file written by ``dropblock-verify plan``; :class:`UsageError` when it is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            job = json.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read job file {path!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"job file {path!r} is not JSON: {exc}") from None
    try:
        from ..runner import check_run_options

        options = RunOptions.from_dict(job.get("options", job) if isinstance(job, dict) else job)
        check_run_options(options)
    except RunSetupError as exc:
        raise UsageError(f"job file {path!r}: {exc}") from None
    if not options.impls:
        raise UsageError(f"job file {path!r} names no implementation")
    return options


def _default_impls(options: RunOptions) -> tuple[RunOptions, dict[str, dict[str, Any]], list[str]]:
    """No ``--impl``: the reference and every installed peer or registered adapter (the others are noted)."""
    from ..adapters import builtin_specs, entry_point_specs
    from ..runner import probe_run

    specs = builtin_specs() + entry_point_specs()
    probes = probe_run(RunOptions(**{**options.to_dict(), "impls": specs}))
    ok = [s for s in specs if probes[s]["status"] == "ok"]
    notes = [f"{s}: not run ({probes[s]['message']})" for s in specs if probes[s]["status"] != "ok"]
    return RunOptions(**{**options.to_dict(), "impls": ok}), {s: probes[s] for s in ok}, notes


def run(args: argparse.Namespace) -> int:
    if isinstance(args.jobs, bool) or args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    baseline = None
    if args.baseline:
        from ..diff import DiffError, load_for_diff

        try:
            baseline = load_for_diff(args.baseline)
        except DiffError as exc:
            raise UsageError(str(exc)) from None
    options = load_job(args.job) if args.job else options_from_args(args, complete=False)
    out = OutputFolder(args.out)
    out.check()
    probe = None
    if options.impls:  # load them in a child process while this one imports the suite
        from ..probe import Probes
        from ..runner import LOAD_TIMEOUT

        probe = Probes(options.impls, profile=options.profile, contract=options.contract,
                       timeout=max(options.timeout, LOAD_TIMEOUT)).start()
    try:
        if not args.job:
            options = options_from_args(args)
        from ..runner import execute, probe_results

        command = "dropblock-verify " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        with out.locked():
            try:
                if probe is not None:
                    probes, notes = probe_results(probe), list[str]()
                else:
                    options, probes, notes = _default_impls(options)
                    if not options.impls:
                        raise UsageError("no implementation could be loaded: " + "; ".join(notes))
            except RunSetupError as exc:
                raise UsageError(str(exc)) from None
            for note in notes:
                print(f"dropblock-verify: {note}", file=sys.stderr)
            terminal = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")  # stays on the terminal
            progress = Progress(quiet=args.quiet, stream=terminal)
            out.prepare()
            try:
                report, code = execute(options, out.path, probes=probes, command=command, jobs=args.jobs,
                                       listeners=[progress.result], on_plan=progress.start, log=out.log)
            except RunSetupError as exc:
                raise UsageError(str(exc)) from None
            except OSError as exc:
                raise OutputError(f"cannot write to {out.path!r}: {exc.strerror or exc}") from None
            finally:
                progress.close()
                terminal.close()
            status = finish(report, out.path, pytest_code=code, notes=notes)
            if baseline is not None:
                from ..diff import compare, render_text

                changes = compare(baseline, report)
                print(render_text(changes, args.baseline, out.path))
                status = max(status, 1 if changes.law_or_verdict_changed else 0)
            return status
    finally:
        if probe is not None:
            probe.stop()


def finish(report: dict, out: str, *, pytest_code: int = 0, notes: list[str] | None = None) -> int:
    """Write report.json and the rendered reports, print the summary and where they went; the exit status."""
    from ..runner import write_report

    try:
        write_report(report, out)
        from ..report_io import render_reports

        results = os.path.join(out, "results.jsonl")
        written = [os.path.join(out, "report.json"), *([results] if os.path.exists(results) else []),
                   *render_reports(report, out)]
    except ImportError as exc:
        raise OutputError(f"report.md, report.html and junit.xml not written to {out!r}: {exc}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise OutputError(f"cannot write the reports to {out!r}: {exc.strerror}") from None
        raise OutputError(f"cannot write the reports to {out!r}: {exc}") from None
    print_summary(report)
    for e in (report.get("run") or {}).get("expectations", []):
        if not e.get("matched"):
            print(f"    warning: expectation {e['pattern']!r} ({e['kind']}) matches no planned check")
    for note in notes or []:
        print(f"    {note}")
    print("reports: " + ", ".join(written))
    if pytest_code == 2:
        return 130
    if pytest_code in (3, 4):
        raise UsageError(f"the test run failed to start (pytest exit status {pytest_code}); see "
                         f"{os.path.join(out, 'pytest.log')}")
    return exit_status(report)


def exit_status(report: dict) -> int:
    """0 when every requested implementation conforms and the record is complete, else 1."""
    impls = report.get("implementations", [])
    if not impls or report.get("partial"):
        return 1
    return 0 if all(i.get("verdict") == "conforms" for i in impls) else 1


__all__ = ["add_options", "add_arguments", "options_from_args", "load_job", "run", "finish", "exit_status",
           "RunSetupError", "DEVICES", "DTYPES"]
