#!/usr/bin/env bash
# mpirun as the tests use it: every rank on this machine, talking over loopback TCP (no network,
# no shared-memory transport to set up), more ranks than cores allowed, and as root where CI runs.
#   mpirun.sh MPIRUN ARGS...
mpirun=$1
shift
extra=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
# Under ASan (CI step 2) the ranks run without LeakSanitizer: OpenMPI's MCA components, loaded
# with dlopen after start-up, keep allocations until exit that LeakSanitizer attributes to the
# wrong module (its module list predates them), so no suppression can name them; every other
# ASan/UBSan check stays on, and the serial paths (derivatives.c, the readers and writers) are
# leak-checked through `nnderiv derivatives` in the derivatives-memory and cli tests.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
exec "$mpirun" "${extra[@]}" "$@"
