/* Shared by the .npy and .csv targets: the CLI's reader takes a path and picks the format by
 * its extension, so each input is written to a private temporary file first (tmpfs when there
 * is one). Going through a real file keeps the reader's regular-file path, the one that
 * compares the declared shape with the file's length before allocating. */
#ifndef NND_FUZZ_ARRAYS_H
#define NND_FUZZ_ARRAYS_H

#include <stddef.h>
#include <stdint.h>

/* Write data to a temporary file ending in `ext`, read it with cli_array_read, check the
 * result's invariants (abort on a violation), remove the file. */
void nnd_fuzz_read_array(const uint8_t *data, size_t size, const char *ext);

#endif
