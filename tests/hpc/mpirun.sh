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
# under ASan (CI step 2): OpenMPI's allocations held until exit are not leaks of ours
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan_mpi.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
exec "$mpirun" "${extra[@]}" "$@"
