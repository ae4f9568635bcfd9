#!/usr/bin/env bash
# Installs what the Python companion's tests need: the package itself with its `record`, `parquet` and `api` extras.
# torch comes first as a CPU build (a local wheel in pip's find-links folder when there is one, else PyTorch's CPU
# index), so that pip does not fetch the multi-gigabyte CUDA build from PyPI.
set -euo pipefail
cd "$(dirname "$0")"
pip=(python3 -m pip install -q --disable-pip-version-check)
if ! python3 -c "import torch" 2>/dev/null; then
    wheel=""
    for folder in $(python3 -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p") /opt/wheels; do
        wheel=$(ls "$folder"/torch-*+cpu-*.whl 2>/dev/null | head -1 || true)
        [ -n "$wheel" ] && break
    done
    if [ -n "$wheel" ] && "${pip[@]}" "$wheel"; then
        echo "installed torch from $wheel"
    else
        echo "installing torch (CPU build) from download.pytorch.org"
        "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
    fi
fi
"${pip[@]}" --no-build-isolation ".[record,parquet,api]" 2>/dev/null || "${pip[@]}" ".[record,parquet,api]"
