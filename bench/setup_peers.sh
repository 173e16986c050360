#!/usr/bin/env bash
# Create bench/.venv with the peers the benchmark compares against (JAX, PyTorch, hessQuik,
# CasADi; folx for the Laplacian product) and the plotting tools. CasADi's generated C is compiled
# by the system's cc (-O3 -march=native -fopenmp). Bench-only: none of these is a dependency of the library.
#
#   bash bench/setup_peers.sh          # create or update bench/.venv
#
# Only PyPI is used. PyTorch's PyPI wheel for Linux pulls its CUDA runtime packages (a few GiB);
# the benchmark runs it on the CPU only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install numpy matplotlib 'jax[cpu]' torch hessQuik casadi folx
"$venv/bin/python" - <<'EOF'
import importlib.metadata as md
for name in ("numpy", "matplotlib", "jax", "jaxlib", "torch", "hessQuik", "casadi", "folx"):
    print(f"{name:12s} {md.version(name)}")
EOF
