#!/usr/bin/env bash
# Builds the Python source plugin into a WebAssembly component:
#   bash examples/python_source/build.sh [OUT.wasm]
# Needs componentize-py (pip install componentize-py==0.25.1).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/py_source.wasm}"
cd "$here"
componentize-py -d "$here/../../sdk/wit" -w source componentize app -o "$out"
