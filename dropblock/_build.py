"""Compiling the CPU kernel (``_kernel/``) into the cache, checking what is loaded, remembering failures.

- The library is built with ``$CC`` (default ``cc``) into ``$DROPBLOCK_CACHE_DIR`` (default
  ``~/.cache/dropblock-conformance``) under a name derived from the source, the compiler, the flags and the CPU
  (the build uses ``-march=native``). Beside it, ``<name>.sha256`` holds the size and SHA-256 of the library as
  built; a library whose size or hash differ (truncated, replaced, half-written) is never loaded (loading a
  truncated library maps pages past its end and kills the process with SIGBUS): it is rebuilt.
- A build that fails or runs past ``$DROPBLOCK_BUILD_TIMEOUT`` seconds (default 120, for all attempts
  together, ``cc --version`` included) is remembered in ``dropblock_kernel_<key>.failed`` (a JSON line with
  the reason), keyed by the compiler (its path, size and modification time, so an upgraded compiler is tried
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

__all__ = ["build", "cache_dir", "verify", "BuildError"]

SOURCE_DIR = Path(__file__).with_name("_kernel")
_SOURCES = ("plan.c", "apply.c")
_HEADERS = ("kernel.h",)
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


def _compile(cc: str, target: Path, deadline: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    manifest_tmp = tmp + ".sha256"
    base = [cc, "-O3", "-shared", "-fPIC", "-std=gnu11", *(str(SOURCE_DIR / n) for n in _SOURCES), "-o", tmp, "-lm"]
    try:
        errors = [""]
        for extra in _FLAG_SETS:
            done = _run(base[:1] + extra + base[1:], deadline)
            if done.returncode == 0:
                Path(manifest_tmp).write_text(_fingerprint(Path(tmp)) + "\n")
                os.replace(tmp, target)  # atomic: concurrent builders each write their own files
                os.replace(manifest_tmp, _manifest(target))
                return
            errors = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise BuildError(f"compiling the kernel failed: {errors[0]}")
    finally:
        for leftover in (tmp, manifest_tmp):
            if os.path.exists(leftover):
                os.unlink(leftover)


def build() -> Path:
    """The path of a verified kernel library for this source, compiler and CPU, built if needed.

    Raises
    ------
    BuildError
        No compiler; the build failed or timed out (now or in an earlier process, see the module docstring).
    OSError
        The cache folder cannot be written.
    """
    cc = os.environ.get("CC", "cc")
    exe = shutil.which(cc)
    if exe is None:
        raise BuildError(f"no C compiler {cc!r} found")
    real = os.path.realpath(exe)
    stat = os.stat(real)
    source = b"".join((SOURCE_DIR / name).read_bytes() for name in _SOURCES + _HEADERS)
    platform_id = (repr(_FLAG_SETS), platform.machine(), sys.platform)
    compiler = (cc, real, str(stat.st_size), str(stat.st_mtime_ns))
    marker = cache_dir() / f"dropblock_kernel_{_digest(source, *compiler, *platform_id)}.failed"
    if marker.exists():
        try:
            reason = json.loads(marker.read_text()).get("reason", "unknown")
        except (OSError, ValueError, AttributeError):
            reason = "unknown"
        raise BuildError(f"an earlier build with {cc!r} failed ({reason}); delete {marker} to retry")
    deadline = time.monotonic() + _timeout()
    try:
        version = _run([cc, "--version"], deadline)
        if version.returncode != 0:
            raise BuildError(f"C compiler {cc!r} --version failed")
        target = cache_dir() / f"dropblock_kernel_{_digest(source, version.stdout, _cpu_id(), *platform_id)}.so"
        if not verify(target):
            _compile(cc, target, deadline)
        return target
    except (BuildError, OSError) as exc:
        if isinstance(exc, BuildError):
            _remember(marker, str(exc))
        raise
