"""nox sessions of dropblock-conformance (``nox -l`` lists them; ``nox -s NAME -- ARGS`` passes ARGS on)."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# torch 2.13.0: CPU build, quick to install; the unit tests run on it.
TORCH_CPU = "2.13.0"
# torch 2.14.1 + torchvision 0.29.1: what the peers need (torchvision does not import beside 2.13.0).
TORCH_PEERS = "2.14.1"
TORCHVISION = "0.29.1"
TIMM = "1.0.31"
PEERS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".peers")


def _install(session: nox.Session, torch_version: str, *extras: str, peers: bool = False) -> None:
    if peers:
        session.install(f"torch=={torch_version}", f"torchvision=={TORCHVISION}")
        session.install("--no-deps", f"timm=={TIMM}")
    else:
        session.install(f"torch=={torch_version}")
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)
    if peers:
        session.run("python", "-m", "verification.adapters.install_peers", "--dest", PEERS_DIR)
        session.env["DROPBLOCK_PEERS_DIR"] = PEERS_DIR


@nox.session
@nox.parametrize("torch", [TORCH_CPU, TORCH_PEERS], ids=["cpu", "peers"])
def tests(session: nox.Session, torch: str) -> None:
    """Unit and fast statistical tests, on CPU torch and on torch with the peers installed.

    The 'peers' variant adds torchvision, timm and the isolated legacy peers so that their regression
    tests run too. Runs pytest -n 2 -m "not slow"; extra pytest arguments after ``--``.
    """
    _install(session, torch, "dev", "reports", peers=torch == TORCH_PEERS)
    session.run("pytest", "-n", "2", "-m", "not slow", *session.posargs)


@nox.session
def verify(session: nox.Session) -> None:
    """The main job: install the package and the peers, run the suite on the reference and every peer.

    Writes reports/latest/ (report.json, results.jsonl, report.md, report.html, junit.xml, pip-freeze.txt).
    Extra arguments go to ``dropblock-verify run`` (e.g. ``-- --impl reference --budget smoke``). A peer that
    does not conform is a finding, not a session failure (exit status 1 is accepted).
    """
    _install(session, TORCH_PEERS, "reports", peers=True)
    session.run("dropblock-verify", "list")
    args = list(session.posargs) or ["--budget", "standard"]
    session.run("dropblock-verify", "run", "--out", "reports/latest", *args, success_codes=[0, 1])


@nox.session
def property(session: nox.Session) -> None:
    """Hypothesis property suite against an implementation (default: the reference under every preset).

    ``nox -s property -- --dropblock-impl torchvision`` targets a peer (installed in this session).
    """
    _install(session, TORCH_PEERS, "dev", peers=True)
    if session.posargs:
        session.run("pytest", "-p", "no:cacheprovider", "--pyargs", "property_tests", "-n", "2",
                    "--hypothesis-profile", "ci", *session.posargs)
        return
    for preset in ("paper", "torchvision", "timm", "timm_legacy", "original"):
        session.run("pytest", "-p", "no:cacheprovider", "--pyargs", "property_tests", "-n", "2",
                    "--hypothesis-profile", "ci", "--dropblock-impl", f"reference:{preset}")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the packages."""
    _install(session, TORCH_CPU, "dev")
    session.run("mypy", "dropblock", "verification", "reports", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks of the reference against the peers and the copy floor (Markdown table and JSON).

    Quick version by default; ``nox -s bench -- --full`` for every shape, block size, dtype and thread count.
    """
    _install(session, TORCH_PEERS, "dev", peers=True)
    os.makedirs("benchmarks/results", exist_ok=True)
    args = session.posargs or ["--quick"]
    session.run("python", "-m", "benchmarks.bench", "--json", "benchmarks/results/bench.json", *args)


@nox.session
def shards(session: nox.Session) -> None:
    """A sharded run as a CI matrix would do it: plan N job files, run each, merge into one report.

    ``nox -s shards -- 4 --impl reference --budget smoke`` (first argument: the number of shards; the rest
    are run options). Writes reports/shards/ and the merged report to reports/latest/.
    """
    _install(session, TORCH_CPU, "reports")
    args = list(session.posargs) or ["4", "--impl", "reference", "--budget", "smoke"]
    n, opts = args[0], args[1:]
    root = "reports/shards"
    session.run("python", "-c", f"import shutil; shutil.rmtree({root!r}, ignore_errors=True)")
    session.run("dropblock-verify", "plan", *opts, "--shards", n, "--write", f"{root}/jobs")
    for i in range(int(n)):
        session.run("dropblock-verify", "run", "--job", f"{root}/jobs/job{i}.json", "--out", f"{root}/shard{i}",
                    "--quiet", success_codes=[0, 1])
    session.run("dropblock-verify", "merge", *[f"{root}/shard{i}" for i in range(int(n))], "--out",
                "reports/latest", success_codes=[0, 1])


@nox.session
def mutants(session: nox.Session) -> None:
    """Measured power: the standard suite on every mutant; prints the kill table (Markdown) and kill rate.

    Extra arguments go to ``python -m verification.zoo`` (e.g. ``-- --budget thorough``).
    """
    _install(session, TORCH_CPU)
    os.makedirs("reports", exist_ok=True)
    session.run("python", "-m", "verification.zoo", "--jobs", "2", "--json", "reports/mutants.json", *session.posargs)


@nox.session
def calibration(session: nox.Session) -> None:
    """Measured false-alarm rate end to end: statistical checks on the reference, every preset, 100 base seeds,
    standard budget.

    Fails if a check rejects significantly more often than its alpha. ``-- --seeds 20`` for the fast version.
    """
    _install(session, TORCH_CPU)
    os.makedirs("reports", exist_ok=True)
    args = session.posargs or ["--seeds", "100"]
    session.run("python", "-m", "verification.calibration", "--jobs", "2", "--json", "reports/calibration.json",
                *args)


@nox.session
def calibration_exact(session: nox.Session) -> None:
    """Each statistical check's false-alarm rate at its alpha, from the exact law (no sampler), standard budget.

    Prints the table and fails if a rate exceeds 1.2 alpha; then the slow test tier (``pytest -m slow``).
    Extra arguments go to ``python -m verification.null_calibration`` (e.g. ``-- --profile timm``).
    """
    _install(session, TORCH_CPU, "dev")
    os.makedirs("reports", exist_ok=True)
    session.run("python", "-m", "verification.null_calibration", "--json", "reports/null_calibration.json",
                *session.posargs)
    session.run("pytest", "-n", "2", "-m", "slow")
