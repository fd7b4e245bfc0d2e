#!/usr/bin/env bash
# Every check of the project, from nothing: a fresh virtual environment, the CPU torch wheel, the
# project with its dev extra, Unsloth, then lint, formatting, types and the tests. CI (.ci/run) and
# the README's test command are this script, so they cannot drift apart.
#
#   scripts/test.sh [VENV_DIR]     # default: a new folder under $TMPDIR, removed at the end
#
# Each check runs even when an earlier one failed, so one run reports every problem; the script
# exits 1 naming the checks that failed. A test run that collects nothing fails too (pytest exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."

if (($#)); then
    venv=$1  # the caller's: kept, to run the tests in again
else
    # About 1.9 GB each time: left behind, every run of CI or of this command filled the disk
    # a little more (42 of them took 80 GB of a build machine's /tmp).
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    venv="$scratch/venv"
fi
echo "== virtual environment: $venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
# The CPU wheel: a bare `torch` pulls GBs of CUDA packages.
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[dev]"
# Unsloth's CPU fallback, for the unsloth-backend tests: pip can only install it without its
# dependencies (it pins a certifi release the registry lacks); on CPU it needs none of them.
python -m pip install --quiet --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9
python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0") and not torch.cuda.is_available(), torch.__version__
print("torch", torch.__version__)
PY

failed=()
check() {
    echo "== $*"
    "$@" || failed+=("$*")
}
check ruff check src tests scripts rewards
check ruff format --check src tests scripts rewards
check mypy src
check python -m pytest

if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "== all checks passed"
