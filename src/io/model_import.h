/* Readers of other frameworks' model files, used by model_load.c: MATLAB genFunction code
 * (model_matlab.c), MAT-files (model_mat.c) and ONNX (model_onnx.c).
 *
 * Each has a sniffer that looks only at the first bytes (1 if they look like its format) and a
 * reader with the signature of nnd__load_json: it parses `len` bytes and builds a validated net
 * through the public builder. name: the file name used in messages (never NULL). *net is NULL on
 * failure; failures are NND_EFORMAT (malformed: the message names the file and the line, variable
 * or node), NND_EUNSUPPORTED (well-formed, but uses something the library does not implement: the
 * message says what and why) or NND_ENOMEM. */
#ifndef NND_MODEL_IMPORT_H
#define NND_MODEL_IMPORT_H

#include <stddef.h>

#include "nnderiv.h"

int nnd__sniff_matlab(const unsigned char *p, size_t n);
nnd_status nnd__load_matlab(const char *text, size_t len, const char *name, nnd_net **net);

int nnd__sniff_onnx(const unsigned char *p, size_t n);
nnd_status nnd__load_onnx(const char *data, size_t len, const char *name, nnd_net **net);
/* The same for a file read from `path`: tensors kept in external data files are read from the
 * path's folder (nnd__load_onnx refuses them: a buffer has no folder). */
nnd_status nnd__load_onnx_file(const char *data, size_t len, const char *path, nnd_net **net);

int nnd__sniff_mat(const unsigned char *p, size_t n);
nnd_status nnd__load_mat(const char *data, size_t len, const char *name, nnd_net **net);

/* Keras (model_keras.c): .keras zip archives and legacy HDF5 .h5 files (a plain HDF5 signature at
 * offset 0; MAT v7.3 files have theirs at 512, after MATLAB's header). */
int nnd__sniff_keras_zip(const unsigned char *p, size_t n);
nnd_status nnd__load_keras_zip(const char *data, size_t len, const char *name, nnd_net **net);
int nnd__sniff_keras_h5(const unsigned char *p, size_t n);
nnd_status nnd__load_keras_h5(const char *data, size_t len, const char *name, nnd_net **net);

#endif
