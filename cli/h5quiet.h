/* libhdf5 prints its error stack on stderr by default; the CLI's own messages are the only
 * ones a user should see. Every HDF5 call of the CLI sits between cli_h5_quiet_begin and
 * cli_h5_quiet_end, which save the current automatic error handler, switch it off, and put
 * the saved one back (so nothing else's setting is changed for good). */
#ifndef NND_CLI_H5QUIET_H
#define NND_CLI_H5QUIET_H

#include <hdf5.h>

typedef struct {
    H5E_auto2_t func;
    void *data;
} cli_h5_quiet;

static inline void cli_h5_quiet_begin(cli_h5_quiet *q)
{
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static inline void cli_h5_quiet_end(const cli_h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

#endif
