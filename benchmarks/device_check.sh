#!/usr/bin/env bash
# CUDA check of the reference DropBlock, for a machine with a GPU: the CUDA tests, then the CUDA benchmark.
#
# Needs torch (CUDA build), pytest, scipy and hypothesis; this package is not installed but found through
# PYTHONPATH=. (the script runs from the repository root wherever it is called from). Finishes in under
# 5 minutes: each step runs under its own time limit. Results go to $OUT when set, else to
# ./benchmarks/results/:
#   env.txt              torch / CUDA / GPU versions
#   pytest_cuda.txt      output of `pytest -m cuda` (exit code in pytest_cuda.rc)
#   bench_cuda.json      benchmark results (bench_cuda.md: the Markdown tables)
#
# Usage: bash benchmarks/device_check.sh
set -u
cd "$(dirname "$0")/.."
DEST="${OUT:-benchmarks/results}"
mkdir -p "$DEST"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"

"$PY" - > "$DEST/env.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
EOF
cat "$DEST/env.txt"

# 1. The CUDA tests (collection errors in modules that need packages missing here do not stop them).
timeout 170 "$PY" -m pytest -m cuda -q -p no:cacheprovider --continue-on-collection-errors tests \
    > "$DEST/pytest_cuda.txt" 2>&1
rc_tests=$?
echo "$rc_tests" > "$DEST/pytest_cuda.rc"
tail -n 25 "$DEST/pytest_cuda.txt"
echo "pytest -m cuda exit code: $rc_tests"

# 2. The CUDA benchmark: the reference's presets, forward and forward+backward, against a device-to-device
#    copy of x (x.clone()), F.dropout and whichever peers import; timed with torch.utils.benchmark and a clock
#    that calls torch.cuda.synchronize() before every reading.
timeout 110 "$PY" -m benchmarks.bench --device cuda --quick --dims 2,3 --dtypes fp32,bf16,fp16 \
    --modes forward,forward+backward --rounds 3 --min-run-time 0.05 --json "$DEST/bench_cuda.json" \
    > "$DEST/bench_cuda.md" 2> "$DEST/bench_cuda.log"
rc_bench=$?
cat "$DEST/bench_cuda.md"
echo "benchmark exit code: $rc_bench"

if [ "$rc_tests" -ne 0 ] || [ "$rc_bench" -ne 0 ]; then
    exit 1
fi
