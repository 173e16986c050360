/* Loading a model: read the bytes, recognise the format by content, hand over to its reader.
 * Each format is one row of `formats`: a sniffer that looks at the first bytes and a reader
 * (one file per format). ONNX, MATLAB genFunction code and MAT-files are rows too (model_import.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "net/internal.h"
#include "io/model_import.h"
#include "io/model_json.h"

typedef struct {
    const char *what;                                        /* for "expected ..." messages */
    int (*sniff)(const unsigned char *p, size_t n);          /* 1 if the bytes look like this format */
    nnd_status (*read)(const char *text, size_t len, const char *name, nnd_net **net);
} nnd_format;

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* nnderiv JSON: the first non-whitespace byte opens an object. */
static int sniff_json(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_space(p[i]))
        i++;
    return i < n && p[i] == '{';
}

static const nnd_format formats[] = {
    {"nnderiv JSON", sniff_json, nnd__load_json},
    {"MATLAB genFunction code", nnd__sniff_matlab, nnd__load_matlab},
    {"ONNX", nnd__sniff_onnx, nnd__load_onnx},
    {"MAT-file", nnd__sniff_mat, nnd__load_mat},
    {"Keras .keras", nnd__sniff_keras_zip, nnd__load_keras_zip},
    {"Keras .h5", nnd__sniff_keras_h5, nnd__load_keras_h5},
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

nnd_status nnd_net_load_buffer(const void *data, size_t size, const char *name, nnd_net **net)
{
    if (!name)
        name = "<buffer>";
    if (!net)
        return nnd__fail(NND_EINVAL, "%s: net is NULL", name);
    *net = NULL;
    if (!data && size > 0)
        return nnd__fail(NND_EINVAL, "%s: data is NULL but size is %zu", name, size);

    const unsigned char *p = data;
    /* A UTF-8 byte order mark is not part of any of our formats' content. */
    if (size >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) {
        p += 3;
        size -= 3;
    }
    size_t i = 0;
    while (i < size && is_space(p[i]))
        i++;
    if (i == size)
        return nnd__fail(NND_EFORMAT, "%s: empty file (no model in it)", name);

    for (size_t f = 0; f < N_FORMATS; f++)
        if (formats[f].sniff(p, size))
            return formats[f].read((const char *)p, size, name, net);

    char expected[128] = "";
    for (size_t f = 0; f < N_FORMATS; f++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s%s", f ? ", " : "", formats[f].what);
    }
    return nnd__fail(NND_EFORMAT, "%s: unrecognised model format (expected %s)", name, expected);
}

/* The whole file into one nnd__malloc'd buffer. A regular file's buffer starts at its size; sizes
 * grow by doubling, checked for overflow, so files whose size changes while reading are handled
 * too. What a non-regular file (a pipe, a device such as /dev/zero) gives is capped at
 * NND_MAX_STREAM_BYTES: it has no size to trust and may never end. */
static nnd_status read_all(const char *path, char **out, size_t *n_out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return nnd__fail(NND_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int regular = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode);
    size_t cap = 1 << 16, n = 0, limit = regular ? SIZE_MAX : (size_t)NND_MAX_STREAM_BYTES;
    if (regular && st.st_size > 0 && (uintmax_t)st.st_size < SIZE_MAX)
        cap = (size_t)st.st_size + 1; /* +1: the read that sees the end needs room */
    char *buf = nnd__malloc(cap, 1);
    nnd_status s = NND_OK;
    if (!buf) {
        s = nnd__fail(NND_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (;;) {
        if (n > limit) {
            s = nnd__fail(NND_EIO, "%s: not a regular file, and more than the %zu bytes read from such a file", path,
                          limit);
            goto done;
        }
        if (n == cap) {
            size_t cap2;
            char *buf2;
            if (!nnd__mul(cap, 2, &cap2)) {
                s = nnd__fail(NND_ENOMEM, "%s: file too large", path);
                goto done;
            }
            if (!(buf2 = nnd__malloc(cap2, 1))) {
                s = nnd__fail(NND_ENOMEM, "%s: out of memory reading %zu bytes", path, cap2);
                goto done;
            }
            memcpy(buf2, buf, n);
            nnd__free(buf);
            buf = buf2;
            cap = cap2;
        }
        size_t want = cap - n;
        if (limit - n < want)
            want = limit - n + 1 <= want ? limit - n + 1 : want; /* one byte past the cap tells */
        size_t got = fread(buf + n, 1, want, fp);
        n += got;
        if (got == 0 || n < cap) {
            if (ferror(fp)) {
                s = nnd__fail(NND_EIO, "%s: cannot read: %s", path, strerror(errno));
                goto done;
            }
            if (feof(fp))
                break;
        }
    }
    if (n > limit)
        s = nnd__fail(NND_EIO, "%s: not a regular file, and more than the %zu bytes read from such a file", path, limit);
done:
    fclose(fp);
    if (s) {
        nnd__free(buf);
        return s;
    }
    *out = buf;
    *n_out = n;
    return NND_OK;
}

nnd_status nnd_net_load(const char *path, nnd_net **net)
{
    if (!net)
        return nnd__fail(NND_EINVAL, "nnd_net_load: net is NULL");
    *net = NULL;
    if (!path)
        return nnd__fail(NND_EINVAL, "nnd_net_load: path is NULL");
    char *buf = NULL;
    size_t n = 0;
    nnd_status s = read_all(path, &buf, &n);
    if (s)
        return s;
    /* ONNX may keep its weights in files beside the model: its reader needs the path. */
    if (nnd__sniff_onnx((const unsigned char *)buf, n))
        s = nnd__load_onnx_file(buf, n, path, net);
    else
        s = nnd_net_load_buffer(buf, n, path, net);
    nnd__free(buf);
    return s;
}
