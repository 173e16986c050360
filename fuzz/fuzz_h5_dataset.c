/* libFuzzer target: the library's bounded HDF5 reader through nnd_h5_dataset_* (what the CLI's .h5
 * inputs use): open a few paths, and read every dataset that opens in windows of rows, as the CLI
 * streams them. A dataset that opens must read without error unless the file is corrupt, and
 * every failure must say why. Large datasets are read only in part: the point is the parser. */
#include <stdint.h>
#include <stdlib.h>

#include "nnderiv.h"

#define MAX_ROW 4096        /* elements of one row read */
#define MAX_ROWS_READ 4096  /* rows read of one dataset */
#define WINDOW 7

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const paths[] = {"/x", "x", "g/samples", "/a/b/c"};
    static double buf[WINDOW * MAX_ROW];
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        nnd_h5_info info;
        nnd_h5_dataset *ds = (nnd_h5_dataset *)1;
        nnd_status s = nnd_h5_dataset_open(data, size, "fuzz.h5", paths[p], &info, &ds);
        if (s != NND_OK) {
            if (ds || nnd_errmsg()[0] == '\0')
                abort(); /* failure must leave *ds NULL and say why */
            return 0;    /* the file is corrupt: every path would say so */
        }
        if (!ds)
            continue;
        if (info.kind != NND_H5_DATASET || info.rank < 1 || info.type_class > NND_H5_FLOAT)
            abort();
        size_t row = 1;
        for (size_t i = 1; i < info.rank && row <= MAX_ROW; i++)
            row = info.dims[i] && row > SIZE_MAX / info.dims[i] ? SIZE_MAX : row * info.dims[i];
        if (row <= MAX_ROW) {
            size_t rows = info.dims[0] < MAX_ROWS_READ ? info.dims[0] : MAX_ROWS_READ;
            for (size_t r = 0; r < rows; r += WINDOW) {
                size_t n = rows - r < WINDOW ? rows - r : WINDOW;
                if (nnd_h5_dataset_read(ds, r, n, buf) != NND_OK) {
                    if (nnd_errmsg()[0] == '\0')
                        abort();
                    break;
                }
            }
        }
        nnd_h5_dataset_free(ds);
    }
    return 0;
}
