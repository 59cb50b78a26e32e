"""nox sessions of dropblock-conformance (``nox -l`` lists them; ``nox -s NAME -- ARGS`` passes ARGS on).

Environments are made by uv where nox finds it (``pip install "nox[uv]"``, ``uvx nox``), else by virtualenv
and pip. uv installs from one cache by hard links, so the sessions that need torch with the peers (``verify``,
``tests(peers)``, ``plugin``, ``bench``) hold one copy of torch and its CUDA libraries on disk between them
(without triton where no NVIDIA driver is found: see NO_TRITON_OVERRIDE); with pip each of them holds its own
(about 6 GB). uv does not read pip's configuration: the index, extra
indexes, find-links and constraint files configured for pip (``pip config list``) are handed to uv, so that
both backends install the same files.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"

# torch 2.13.0: CPU build, quick to install; the unit tests run on it.
TORCH_CPU = "2.13.0"
# torch 2.14.1 + torchvision 0.29.1: what the peers need (torchvision does not import beside 2.13.0).
TORCH_PEERS = "2.14.1"
TORCHVISION = "0.29.1"
TIMM = "1.0.31"
PEERS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".peers")
# What verification.adapters.install_peers puts under PEERS_DIR (the isolated timm 1.0.22 and dropblock 0.3.0).
PEER_PACKAGES = ("timm-1.0.22/timm", "dropblock-0.3.0/dropblock")
# Written by tests(cpu), read by tests(peers): the tests skipped for want of a peer.
PEER_SKIPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nox", "peer-skips.txt")
# Tests tests(peers) runs besides those: the reference under torch.compile, export and its custom operators,
# whose C++ operator is built against each torch and whose compiled draw is placed by reading torch's tracer.
TORCH_VERSION_TESTS = ("tests/test_execution_modes.py", "tests/test_operator.py", "tests/test_mask_op.py",
                       "tests/test_hoist.py")
# triton (about 0.9 GB) compiles torch.compile's kernels for NVIDIA GPUs; without an NVIDIA driver it is never
# loaded (inductor compiles C++ for the CPU), so uv installs torch 2.14.1 without it there: an override whose
# marker never holds drops the dependency. DROPBLOCK_TRITON=1 keeps it. (pip has no overrides: with the
# virtualenv backend triton is installed as usual.)
NO_TRITON_OVERRIDE = 'triton ; sys_platform == "never"'
DOCS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]

# pip option -> uv environment variable (uv's names for the same settings).
_PIP_TO_UV = {"index-url": "UV_INDEX_URL", "extra-index-url": "UV_EXTRA_INDEX_URL", "find-links": "UV_FIND_LINKS",
              "constraint": "UV_CONSTRAINT"}


def pip_sources() -> dict[str, str]:
    """pip's configured package sources, ``{option: value}``, with pip's precedence (environment, then the
    ``install`` section, then ``global``); empty when pip cannot be asked."""
    for python in (sys.executable, "python3"):
        try:
            out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                 timeout=60, check=True).stdout
            break
        except (OSError, subprocess.SubprocessError):
            continue
    else:
        return {}
    found: dict[tuple[str, str], str] = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        scope, _, option = name.rpartition(".")
        if sep and option in _PIP_TO_UV:
            try:
                found[(scope, option)] = str(ast.literal_eval(value))
            except (ValueError, SyntaxError):
                continue
    sources = {}
    for option in _PIP_TO_UV:
        for scope in (":env:", "install", "global"):
            if (scope, option) in found:
                sources[option] = found[(scope, option)]
                break
    return sources


def _hand_pip_sources_to_uv() -> None:
    """Set uv's variables from pip's configuration, unless uv is configured already (``UV_*`` set)."""
    if any(name in os.environ for name in _PIP_TO_UV.values()):
        return
    sources = pip_sources()
    for option, value in sources.items():
        os.environ[_PIP_TO_UV[option]] = value
    if sources:  # pip takes the best version over all indexes; uv stops at the first index that has a package
        os.environ.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")


_hand_pip_sources_to_uv()


def _without_triton(session: nox.Session) -> list[str]:
    """uv's arguments that leave triton out (see NO_TRITON_OVERRIDE); none where a GPU driver is found, with
    ``DROPBLOCK_TRITON=1``, or with the virtualenv backend."""
    if (session.venv_backend != "uv" or os.environ.get("DROPBLOCK_TRITON") == "1"
            or shutil.which("nvidia-smi") is not None):
        return []
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nox", "no-triton-overrides.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(NO_TRITON_OVERRIDE + "\n")
    return ["--overrides", path]


def _install(session: nox.Session, torch_version: str, *extras: str, peers: bool = False) -> None:
    overrides = _without_triton(session)
    if peers:
        session.install(*overrides, f"torch=={torch_version}", f"torchvision=={TORCHVISION}")
        session.install("--no-deps", f"timm=={TIMM}")
    else:
        session.install(*overrides, f"torch=={torch_version}")
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(*overrides, "-e", spec)
    if peers:
        if not all(os.path.isdir(os.path.join(PEERS_DIR, p)) for p in PEER_PACKAGES):
            if session.venv_backend == "uv":
                session.install("pip")  # install_peers runs pip; uv environments come without it
            session.run("python", "-m", "verification.adapters.install_peers", "--dest", PEERS_DIR)
        session.env["DROPBLOCK_PEERS_DIR"] = PEERS_DIR


@nox.session
@nox.parametrize("torch", [TORCH_CPU, TORCH_PEERS], ids=["cpu", "peers"])
def tests(session: nox.Session, torch: str) -> None:
    """Unit and fast statistical tests, on CPU torch, then on torch with the peers installed.

    ``tests(cpu)`` runs the whole suite (pytest -n 2 -m "not slow") on the CPU build of torch and lists the
    tests it skipped because a peer is not installed (tests/conftest.py). ``tests(peers)`` adds torchvision,
    timm and the isolated legacy peers and runs those tests, and the tests of the reference's execution modes
    (compile, export, the custom operator: what changes most between torch versions), on the CUDA build of
    torch; run alone, or with extra pytest arguments (after ``--``), it runs the whole suite.
    """
    peers = torch == TORCH_PEERS
    _install(session, torch, "dev", "reports", peers=peers)
    if not peers:
        session.env["DROPBLOCK_PEER_SKIPS"] = PEER_SKIPS
        if os.path.exists(PEER_SKIPS):
            os.remove(PEER_SKIPS)
        session.run("pytest", "-n", "2", "-m", "not slow", *session.posargs)
        return
    selected: list[str] = []
    if not session.posargs and os.path.exists(PEER_SKIPS):
        with open(PEER_SKIPS, encoding="utf-8") as fh:
            selected = [line.strip() for line in fh if line.strip()] + list(TORCH_VERSION_TESTS)
        session.log(f"{len(selected) - len(TORCH_VERSION_TESTS)} tests that tests(cpu) skipped for want of a peer, "
                    f"and {', '.join(TORCH_VERSION_TESTS)}")
    session.run("pytest", "-n", "2", "-m", "not slow", *selected, *session.posargs)


@nox.session
def verify(session: nox.Session) -> None:
    """The main job: install the package and the peers, run the suite on the reference and every peer.

    Writes reports/latest/ (report.json, results.jsonl, report.md, report.html, junit.xml, pip-freeze.txt).
    Extra arguments go to ``dropblock-verify run`` (e.g. ``-- --impl reference --budget smoke``). A peer that
    does not conform is a finding, not a session failure (exit status 1 is accepted).
    """
    _install(session, TORCH_PEERS, "reports", peers=True)
    args = list(session.posargs) or ["--budget", "standard"]
    session.run("dropblock-verify", "run", "--out", "reports/latest", *args, success_codes=[0, 1])


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (MkDocs), built into site/ with every warning an error.

    Broken internal links and anchors, missing pages and API objects fail the build. The check catalogue
    page is generated from the suite itself (``docs/hooks/catalogue.py``). ``nox -s docs -- serve`` previews it.
    """
    _install(session, TORCH_CPU)
    session.install(*DOCS)
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # mkdocs-material's banner about its successor
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
        return
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs)


@nox.session
def plugin(session: nox.Session) -> None:
    """The catalogue through pytest, as a project's CI runs it (``pytest --pyargs verification.test_conformance``).

    Default: the reference under every preset; ``nox -s plugin -- --dropblock-impl torchvision`` (any
    ``--dropblock-*`` options) targets what you name. The implementations run in two xdist workers.
    """
    _install(session, TORCH_PEERS, peers=True)
    base = ["pytest", "-p", "no:cacheprovider", "--pyargs", "verification.test_conformance", "-n", "2", "-q"]
    if session.posargs:
        session.run(*base, *session.posargs)
        return
    session.run(*base, *[a for p in ("paper", "torchvision", "timm", "timm_legacy", "original")
                         for a in ("--dropblock-impl", f"reference:{p}")])


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


# Framework packages tried by the 'frameworks' session: (label, pip arguments). One that fails to install is
# reported and its tests are skipped. tf_keras gives 'from tensorflow import keras' the Keras 2 API that
# keras-drop-block uses (with TF_USE_LEGACY_KERAS=1).
FRAMEWORK_PACKAGES = (
    ("jax", ["jax"]),
    ("tensorflow", ["tensorflow-cpu", "tf_keras"]),
    ("keras-cv", ["keras-cv"]),
    ("keras-drop-block", ["keras-drop-block"]),
    ("paddle", ["paddlepaddle"]),
)
# Published implementations (and the examples written for the tests) judged by the standard suite:
# (label, spec, further run options of that implementation). The TensorFlow example serves square maps only, as
# the authors' TPU code does, and declares so (a square-only contract: the checks ask for square maps).
FRAMEWORK_IMPLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("numpy-example", "numpy:numpy_dropblock:drop_block(x, drop_prob, block_size, rng=rng)@nhwc", ()),
    ("jax-example", "jax:jax_dropblock:drop_block(key, x, drop_prob, block_size)", ()),
    ("tf-square-example", "tf:tf_dropblock:drop_block(x, keep_prob, block_size)", ("--contract", "square_only")),
    ("keras-cv", "keras:keras_cv.layers:DropBlock2D(rate=drop_prob, block_size=block_size, dtype=dtype)", ()),
    ("keras-drop-block", "tensorflow:keras_drop_block:DropBlock2D(block_size=block_size, keep_prob=keep_prob, "
                         "dtype=dtype)", ()),
    ("keras-drop-block-sync", "tensorflow:keras_drop_block:DropBlock2D(block_size=block_size, "
                              "keep_prob=keep_prob, sync_channels=True, dtype=dtype)", ()),
)


@nox.session
def frameworks(session: nox.Session) -> None:
    """Implementations from other frameworks: the bridges' tests and the suite on published implementations.

    Installs JAX, TensorFlow (with tf_keras), keras-cv, keras-drop-block and PaddlePaddle where they install,
    runs tests/test_frameworks.py (Paddle in a process of its own: importing Paddle after TensorFlow
    segfaults), then ``dropblock-verify run`` on each of FRAMEWORK_IMPLS in its own process (with that entry's
    own options, e.g. the TensorFlow example's square-only contract), writing reports/frameworks/<label>/.
    Extra arguments go to ``dropblock-verify run`` (default ``--budget standard``); a non-conforming or
    unavailable implementation is a finding (exit status 1), not a session failure; bad usage (2) is one.
    """
    _install(session, TORCH_CPU, "dev", "reports")
    missing = []
    for label, packages in FRAMEWORK_PACKAGES:
        try:
            session.install(*packages)
        except nox.command.CommandFailed:
            missing.append(label)
    if missing:
        session.warn(f"not installed here (their tests are skipped): {', '.join(missing)}")
    session.env["TF_USE_LEGACY_KERAS"] = "1"
    session.env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    session.env["PYTHONPATH"] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples", "frameworks")
    session.run("pytest", "tests/test_frameworks.py", "-k", "not paddle")
    session.run("pytest", "tests/test_frameworks.py", "-k", "paddle")
    args = list(session.posargs) or ["--budget", "standard"]
    for label, spec, options in FRAMEWORK_IMPLS:
        session.run("dropblock-verify", "run", "--impl", spec, *options, "--out", f"reports/frameworks/{label}",
                    "--quiet", *args, success_codes=[0, 1])


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
