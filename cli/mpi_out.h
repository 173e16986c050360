/* The output set of nnderiv-mpi: .npy (one array) or .h5 (every array as a dataset), written by
 * every rank at its rows' offsets with MPI-IO, completed and renamed over the target by rank 0.
 *
 * Why MPI-IO and not parallel HDF5: the library links libmatio, which links the serial libhdf5,
 * and the CLI's readers use it too; a process holding libhdf5_openmpi as well has two HDF5
 * builds with separate global state (error stacks, open-object tables, H5T_NATIVE_* ids), and an
 * executable's own references to H5* bind at link time to whichever of the two comes first: the
 * serial reader's calls would go to the parallel build or the other way round. Debian versions
 * the two builds' symbols (HDF5_SERIAL_1.8.7 vs HDF5_MPI_1.8.7, see `objdump -T`), which keeps
 * libmatio's references apart, but other distributions and Spack builds do not. So the process
 * holds one HDF5, the serial one: rank 0 creates the file with it (contiguous datasets allocated
 * at creation, no fill, attributes), asks each dataset's file offset (H5Dget_offset) and closes
 * it; then every rank writes raw rows at offset + row * row_bytes with collective
 * MPI_File_write_at_all, which is what parallel HDF5 itself does for a contiguous dataset. The
 * cost: no compression in parallel (a compressed chunk's size is not known in advance).
 *
 * Every function is collective over the communicator and returns the same status on every rank:
 * 0, or -1 with a message in `err` on the ranks where it failed (empty elsewhere). */
#ifndef NND_CLI_MPI_OUT_H
#define NND_CLI_MPI_OUT_H

#include <mpi.h>
#include <stddef.h>

#include "stream.h"

typedef struct mpi_outset mpi_outset;

/* 1 when any rank passes failed != 0 (an MPI_Allreduce): the one place where ranks agree. */
int mpi_any(MPI_Comm comm, int failed);

/* Create the temporary file in the target's folder (rank 0; registered with the CLI's signal
 * handler, which removes it on SIGINT/SIGTERM) and open it on every rank. All arrays
 * must have the same path; .npy takes one array. opts->compress is refused. */
int mpi_outset_open(mpi_outset **o, MPI_Comm comm, size_t n_arrays, const cli_out_array *arrays,
                    const cli_out_opts *opts, char *err, size_t errlen);

/* Write `rows` rows (0 on a rank with nothing this round) starting at row0 of every array:
 * chunks[a] holds rows * (row length of array a) doubles (stored as float32 with opts->float32).
 * `failed`: this rank's own state; when any rank has failed nothing is written and -1 returned. */
int mpi_outset_write_at(mpi_outset *o, int failed, size_t row0, size_t rows, const double *const *chunks,
                        char *err, size_t errlen);

/* Complete the file and rename it over the target (rank 0, SIGINT/SIGTERM blocked until the
 * handler knows it is in place), when no rank has `failed`; else (or on any error) remove it. The
 * set is freed either way. */
int mpi_outset_commit(mpi_outset *o, int failed, char *err, size_t errlen);

#endif
