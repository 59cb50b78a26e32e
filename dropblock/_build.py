"""Compiling the CPU kernel (``_kernel/``) into the cache, checking what is loaded, remembering failures.

Two libraries: the kernel (``plan.c``, ``apply.c``; :func:`build`, loaded through ctypes by
:mod:`dropblock._native`) and the C++ operator of compiled draws (``op.cpp`` with the same C sources, against the
running torch; :func:`build_operator`, loaded by :mod:`dropblock._mask_op`). Both are built, checked and
remembered alike:

- The library is built with ``$CC`` (default ``cc``; ``$CXX``, default ``c++``, for the operator) into
  ``$DROPBLOCK_CACHE_DIR`` (default
  ``~/.cache/dropblock-conformance``) under a name derived from the source, the compiler, the flags and the CPU
  (the build uses ``-march=native``). Beside it, ``<name>.sha256`` holds the size and SHA-256 of the library as
  built; a library whose size or hash differ (truncated, replaced, half-written) is never loaded (loading a
  truncated library maps pages past its end and kills the process with SIGBUS): it is rebuilt.
- A build that fails or runs past ``$DROPBLOCK_BUILD_TIMEOUT`` seconds (default 120, for all attempts
  together, ``cc --version`` included) is remembered in ``dropblock_<kernel|operator>_<key>.failed`` (a JSON
  line with the reason), keyed by the compiler (its path, size and modification time, so an upgraded compiler is tried
  again) and the source. Later processes take the torch path at once; deleting that file retries.
- A compiler that hangs is stopped with its whole process group (the compiler's own children included).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["build", "build_operator", "cache_dir", "verify", "BuildError"]

SOURCE_DIR = Path(__file__).with_name("_kernel")
_SOURCES = ("plan.c", "apply.c")
_HEADERS = ("kernel.h",)
_OPERATOR_SOURCE = "op.cpp"
# Compiler flags, best first: OpenMP threads (torch's own runtime, see _kernel/apply.c), this CPU's vector units.
_FLAG_SETS: tuple[list[str], ...] = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], [])
_DEFAULT_TIMEOUT = 120.0


class BuildError(RuntimeError):
    """The kernel could not be built (or was not, because an earlier build with this compiler failed)."""


def cache_dir() -> Path:
    env = os.environ.get("DROPBLOCK_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dropblock-conformance"


def _timeout() -> float:
    raw = os.environ.get("DROPBLOCK_BUILD_TIMEOUT", "")
    try:
        value = float(raw) if raw.strip() else _DEFAULT_TIMEOUT
    except ValueError:
        raise BuildError(f"DROPBLOCK_BUILD_TIMEOUT must be a number of seconds, got {raw!r}") from None
    return value if value > 0 else _DEFAULT_TIMEOUT


def _cpu_id() -> str:
    """Model name and feature flags of this CPU (the build uses ``-march=native``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(keep))


def _digest(*parts: bytes | str) -> str:
    return hashlib.sha256(b"\0".join(p.encode() if isinstance(p, str) else p for p in parts)).hexdigest()[:16]


def _run(cmd: list[str], deadline: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; past ``deadline`` (``time.monotonic()``) kill the whole group."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BuildError(f"{cmd[0]} ran past DROPBLOCK_BUILD_TIMEOUT={_timeout():g}s and was stopped") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _manifest(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fingerprint(path: Path) -> str:
    data = path.read_bytes()
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}"


def verify(path: Path) -> bool:
    """True when ``path`` and its ``.sha256`` exist and the library's size and SHA-256 are those recorded."""
    try:
        return _manifest(path).read_text().strip() == _fingerprint(path)
    except OSError:
        return False


def _remember(marker: Path, reason: str) -> None:
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"reason": reason, "time": time.time()}) + "\n")
    except OSError:
        pass  # an unwritable cache: nothing to remember with


def _compile(kind: str, attempts, target: Path, deadline: float) -> None:
    """Build ``target`` with the first of ``attempts(output, workdir)`` (each a list of command lines, run in
    order) whose commands all succeed; the library is moved into place atomically, with its manifest."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    manifest_tmp = tmp + ".sha256"
    try:
        errors = [""]
        with tempfile.TemporaryDirectory(dir=target.parent) as workdir:
            for attempt in attempts(tmp, workdir):
                for cmd in attempt:
                    done = _run(cmd, deadline)
                    if done.returncode != 0:
                        errors = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
                        break
                else:
                    Path(manifest_tmp).write_text(_fingerprint(Path(tmp)) + "\n")
                    os.replace(tmp, target)  # atomic: concurrent builders each write their own files
                    os.replace(manifest_tmp, _manifest(target))
                    return
        raise BuildError(f"compiling the {kind} failed: {errors[0]}")
    finally:
        for leftover in (tmp, manifest_tmp):
            if os.path.exists(leftover):
                os.unlink(leftover)


def _compiler(variable: str, default: str, language: str) -> tuple[str, tuple[str, ...]]:
    """The compiler named by ``$variable`` (or ``default``) and what identifies it: path, size, mtime."""
    name = os.environ.get(variable, default)
    exe = shutil.which(name)
    if exe is None:
        raise BuildError(f"no {language} compiler {name!r} found")
    real = os.path.realpath(exe)
    stat = os.stat(real)
    return name, (name, real, str(stat.st_size), str(stat.st_mtime_ns))


def _build(kind: str, compilers: list[tuple[str, tuple[str, ...]]], source: bytes, attempts) -> Path:
    """The verified library ``dropblock_<kind>_<key>.so`` in the cache, built by ``attempts`` if needed; a failed
    build is remembered per compilers and source (see the module docstring)."""
    platform_id = (repr(_FLAG_SETS), platform.machine(), sys.platform)
    ids = [part for _, identity in compilers for part in identity]
    marker = cache_dir() / f"dropblock_{kind}_{_digest(source, *ids, *platform_id)}.failed"
    names = " and ".join(repr(name) for name, _ in compilers)
    if marker.exists():
        try:
            reason = json.loads(marker.read_text()).get("reason", "unknown")
        except (OSError, ValueError, AttributeError):
            reason = "unknown"
        raise BuildError(f"an earlier build with {names} failed ({reason}); delete {marker} to retry")
    deadline = time.monotonic() + _timeout()
    try:
        versions = []
        for name, _ in compilers:
            version = _run([name, "--version"], deadline)
            if version.returncode != 0:
                raise BuildError(f"compiler {name!r} --version failed")
            versions.append(version.stdout)
        target = cache_dir() / f"dropblock_{kind}_{_digest(source, *versions, _cpu_id(), *platform_id)}.so"
        if not verify(target):
            _compile(kind, attempts, target, deadline)
        return target
    except (BuildError, OSError) as exc:
        if isinstance(exc, BuildError):
            _remember(marker, str(exc))
        raise


def _sources(names: tuple[str, ...]) -> bytes:
    return b"".join((SOURCE_DIR / name).read_bytes() for name in names)


def build() -> Path:
    """The path of a verified kernel library for this source, compiler and CPU, built if needed.

    Raises
    ------
    BuildError
        No compiler; the build failed or timed out (now or in an earlier process, see the module docstring).
    OSError
        The cache folder cannot be written.
    """
    cc = _compiler("CC", "cc", "C")

    def attempts(out: str, workdir: str) -> list[list[list[str]]]:
        return [[[cc[0], *extra, "-O3", "-shared", "-fPIC", "-std=gnu11", *(str(SOURCE_DIR / n) for n in _SOURCES),
                  "-o", out, "-lm"]] for extra in _FLAG_SETS]

    return _build("kernel", [cc], _sources(_SOURCES + _HEADERS), attempts)


def build_operator() -> Path:
    """The path of a verified library of the C++ operator ``dropblock::drop_block_mask_cpu`` (``_kernel/op.cpp``
    with the kernel's C sources, against the running torch's headers and libraries), built if needed.

    Built with ``$CXX`` (default ``c++``, C++20 as torch's headers need, else C++17) and ``$CC``; keyed as
    :func:`build` is, and also by torch's version and location. Raises as :func:`build`.
    """
    import torch

    cc, cxx = _compiler("CC", "cc", "C"), _compiler("CXX", "c++", "C++")
    # torch's headers and libraries, where torch.utils.cpp_extension.include_paths() and library_paths() find
    # them for a CPU extension (read here without importing that module, which warns about CUDA on import)
    root = Path(torch.__file__).parent
    include_dirs = [root / "include", root / "include" / "torch" / "csrc" / "api" / "include"]
    includes = [f"-I{path}" for path in include_dirs]
    libraries = [f"-L{root / 'lib'}", f"-Wl,-rpath,{root / 'lib'}"]
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}"

    def attempts(out: str, workdir: str) -> list[list[list[str]]]:
        objects = [os.path.join(workdir, name + ".o") for name in _SOURCES]
        found = []
        for extra in _FLAG_SETS:
            steps = [[cc[0], *extra, "-O3", "-fPIC", "-std=gnu11", "-c", str(SOURCE_DIR / name), "-o", obj]
                     for name, obj in zip(_SOURCES, objects)]
            for std in ("-std=c++20", "-std=c++17"):
                found.append([*steps, [cxx[0], *extra, std, "-O3", "-shared", "-fPIC", abi, *includes,
                                       str(SOURCE_DIR / _OPERATOR_SOURCE), *objects, "-o", out, *libraries,
                                       "-lc10", "-ltorch_cpu", "-lm"]])
        return found

    source = _sources(_SOURCES + _HEADERS + (_OPERATOR_SOURCE,)) + torch.__version__.encode()
    source += "\0".join(map(str, include_dirs)).encode()
    return _build("operator", [cc, cxx], source, attempts)
