/* nnd_h5_dataset_*: one dataset of an HDF5 file in memory, read in row windows by the bounded HDF5
 * reader (h5_read.h). The dataset keeps the reader's budget; each read gets the work budget afresh
 * (a read's work is bounded by the file's size, as the open's), and its scratch goes back. */
#include <string.h>

#include "net/internal.h"
#include "io/h5_read.h"

struct nnd_h5_dataset {
    matx x;
    h5r h;
    h5obj o;
    size_t work; /* the work budget of one call */
    char *name, *path;
};

void nnd_h5_dataset_free(nnd_h5_dataset *d)
{
    if (!d)
        return;
    matx_release(&d->x);
    nnd__free(d->name);
    nnd__free(d->path);
    nnd__free(d);
}

static char *dup(const char *s)
{
    size_t n = strlen(s);
    char *c = nnd__malloc(n + 1, 1);
    if (c)
        memcpy(c, s, n + 1);
    return c;
}

nnd_status nnd_h5_dataset_open(const void *data, size_t size, const char *name, const char *path,
                               nnd_h5_info *info, nnd_h5_dataset **ds)
{
    if (ds)
        *ds = NULL;
    if (!data || !path || !info || !ds)
        return nnd__fail(NND_EINVAL, "nnd_h5_dataset_open: data, path, info and ds must not be NULL");
    memset(info, 0, sizeof *info);
    nnd_h5_dataset *d = nnd__calloc(1, sizeof *d);
    if (!d || !(d->name = dup(name ? name : "HDF5 buffer")) || !(d->path = dup(path))) {
        nnd_h5_dataset_free(d);
        return nnd__fail(NND_ENOMEM, "nnd_h5_dataset_open: out of memory");
    }
    matx_init(&d->x, d->name, size);
    d->x.kind = "HDF5 file";
    d->work = d->x.work;
    uint64_t addr = H5R_UNDEF;
    nnd_status s = h5r_open(&d->h, &d->x, data, size, 0);
    d->h.var = d->path;
    if (!s)
        s = h5r_find(&d->h, d->h.root, path, &addr);
    if (s || addr == H5R_UNDEF) {
        nnd_h5_dataset_free(d);
        return s;
    }
    h5obj *o = &d->o;
    if ((s = h5r_object(&d->h, addr, o))) {
        nnd_h5_dataset_free(d);
        return s;
    }
    info->kind = o->group ? NND_H5_GROUP : o->have_layout && o->have_type && o->have_space ? NND_H5_DATASET
                                                                                          : NND_H5_OTHER_OBJECT;
    if (info->kind == NND_H5_DATASET) {
        info->type_class = o->tclass == 0 || o->tclass == 1 ? o->tclass
                           : o->tclass == 3 || (o->tclass == 9 && o->vlen_string) ? NND_H5_STRING
                                                                                   : NND_H5_OTHER_TYPE;
        info->type_size = o->tsize;
        info->rank = o->null_space ? 0 : o->rank;
        for (size_t i = 0; i < info->rank; i++)
            info->dims[i] = o->dims[i] > SIZE_MAX ? SIZE_MAX : (size_t)o->dims[i];
    }
    size_t numel;
    if (info->kind != NND_H5_DATASET || info->type_class > NND_H5_FLOAT || info->rank == 0 || o->tsize == 0 ||
        o->tsize > 8 || (s = h5r_numel(&d->h, o, &numel)) || (s = h5r_read_rows(&d->h, o, 0, 0, NULL))) {
        nnd_h5_dataset_free(d);
        return s;
    }
    *ds = d;
    return NND_OK;
}

nnd_status nnd_h5_dataset_read(nnd_h5_dataset *d, size_t row0, size_t n_rows, double *out)
{
    if (!d || (!out && n_rows))
        return nnd__fail(NND_EINVAL, "nnd_h5_dataset_read: ds and out must not be NULL");
    const h5obj *o = &d->o;
    size_t row = 1, count;
    for (size_t i = 1; i < o->rank; i++)
        row *= (size_t)o->dims[i]; /* checked by the open: the product of all dims fits */
    if (row0 > o->dims[0] || n_rows > o->dims[0] - row0)
        return nnd__fail(NND_EINVAL, "%s: rows %zu to %zu of a dataset of %zu rows", d->name, row0, row0 + n_rows,
                         (size_t)o->dims[0]);
    count = n_rows * row;
    d->x.work = d->work;
    nnd_status s = h5r_read_rows(&d->h, o, row0, n_rows, (unsigned char *)out);
    if (s)
        return s;
    const unsigned char *raw = (const unsigned char *)out;
    for (size_t i = count; i-- > 0;) { /* in place, from the end: element i's bytes lie at or below out[i] */
        double v = h5r_elem(o, raw + i * o->tsize);
        out[i] = v;
    }
    return NND_OK;
}
