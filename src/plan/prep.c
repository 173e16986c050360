/* The prepared net (prep.h): sizes, folded input processing, output map. */
#include "plan/prep.h"

static nnd_status sizes(nnd_prep *p)
{
    const nnd_net *net = p->net;
    p->n = net->n_in;
    p->d0 = nnd__net_d0(net);
    p->L = net->n_layers;
    p->me = net->layers[p->L - 1].n_out;
    p->m = nnd_net_n_out(net);
    size_t s;
    if (!nnd__mul(p->n, p->n + 1, &s))
        return nnd__fail(NND_EDIM, "nnd_plan_new: n_in = %zu is too large", p->n);
    p->s = s / 2;
    p->off = nnd__malloc(p->L, sizeof *p->off);
    if (!p->off)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    p->D = 0;
    p->dmax = p->d0;
    for (size_t l = 0; l < p->L; l++) {
        size_t d = net->layers[l].n_out;
        p->off[l] = p->D;
        if (!nnd__add(p->D, d, &p->D))
            return nnd__fail(NND_EDIM, "nnd_plan_new: layer widths overflow");
        if (d > p->dmax)
            p->dmax = d;
    }
    return NND_OK;
}

/* The input processing as a Jacobian: processed coordinate j is fac_j * x[src_j] plus a
 * constant (mapminmax and mapstd scale, removeconstantrows selects). */
static void input_map(const nnd_net *net, size_t *src, double *fac)
{
    for (size_t i = 0; i < net->n_in; i++) {
        src[i] = i;
        fac[i] = 1.0;
    }
    for (size_t k = 0; k < net->n_pre; k++) {
        const nnd_proc *st = &net->pre[k];
        if (st->type == NND_PROC_REMOVECONSTANTROWS) {
            for (size_t j = 0; j < st->n_out; j++) { /* keep is increasing: in place is safe */
                src[j] = src[st->keep[j]];
                fac[j] = fac[st->keep[j]];
            }
        } else {
            for (size_t j = 0; j < st->n_out; j++)
                fac[j] *= st->gain[j];
        }
    }
}

/* W (d x d0) times the processed input's Jacobian into out (d x n, zeroed):
 * out[:, src_j] += W[:, j] * fac_j. */
static void fold(const nnd_prep *p, const double *W, size_t d, const size_t *src, const double *fac, double *out)
{
    size_t n = p->n, d0 = p->d0;
    for (size_t u = 0; u < d; u++)
        for (size_t j = 0; j < d0; j++)
            out[u * n + src[j]] += W[u * d0 + j] * fac[j];
}

/* dz_1/dx with the input processing folded in (chains); for graphs the input map itself, J0 and
 * the folded weights of every dense layer fed by the input. */
static nnd_status fold_input(nnd_prep *p)
{
    const nnd_net *net = p->net;
    size_t n = p->n, d0 = p->d0;
    size_t *src = p->in_src = nnd__malloc(n, sizeof *src);
    double *fac = p->in_fac = nnd__malloc(n, sizeof *fac);
    if (!src || !fac)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    input_map(net, src, fac);
    if (p->chain) {
        if (!(p->W1g = nnd__calloc(net->layers[0].n_out * n, sizeof(double))))
            return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
        fold(p, net->layers[0].W, net->layers[0].n_out, src, fac, p->W1g);
        return NND_OK;
    }
    if (!(p->J0 = nnd__calloc(d0 * n, sizeof(double))) || !(p->Wg = nnd__calloc(p->L, sizeof *p->Wg)))
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    for (size_t j = 0; j < d0; j++)
        p->J0[j * n + src[j]] = fac[j];
    for (size_t l = 0; l < p->L; l++) {
        const nnd_layer *L = &net->layers[l];
        if (L->kind != NND_LAYER_DENSE || L->src[0] != NND_NET_INPUT)
            continue;
        if (!(p->Wg[l] = nnd__calloc(L->n_out * n, sizeof(double))))
            return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
        fold(p, L->W, L->n_out, src, fac, p->Wg[l]);
    }
    return NND_OK;
}

/* Engine output k -> raw output row and derivative scale, through the output steps reversed. */
static nnd_status map_outputs(nnd_prep *p)
{
    const nnd_net *net = p->net;
    p->row_of = nnd__malloc(p->me, sizeof *p->row_of);
    p->oscale = nnd__malloc(p->me, sizeof *p->oscale);
    if (!p->row_of || !p->oscale)
        return nnd__fail(NND_ENOMEM, "nnd_plan_new: out of memory");
    for (size_t k = 0; k < p->me; k++) {
        size_t row = k;
        double scale = 1.0;
        for (size_t st = net->n_post; st-- > 0;) {
            const nnd_proc *q = &net->post[st];
            if (q->type == NND_PROC_REMOVECONSTANTROWS)
                row = q->keep[row];
            else
                scale /= q->gain[row];
        }
        p->row_of[k] = row;
        p->oscale[k] = scale;
    }
    p->const_rows = p->m != p->me;
    return NND_OK;
}

nnd_status nnd__prep_init(nnd_prep *p, const nnd_net *net)
{
    *p = (nnd_prep){.net = net, .chain = nnd__net_is_chain(net)};
    nnd_status st = sizes(p);
    if (st == NND_OK)
        st = fold_input(p);
    if (st == NND_OK)
        st = map_outputs(p);
    return st;
}

void nnd__prep_free(nnd_prep *p)
{
    nnd__free(p->off);
    nnd__free(p->W1g);
    nnd__free(p->row_of);
    nnd__free(p->oscale);
    nnd__free(p->in_src);
    nnd__free(p->in_fac);
    nnd__free(p->J0);
    for (size_t l = 0; p->Wg && l < p->L; l++)
        nnd__free(p->Wg[l]);
    nnd__free(p->Wg);
    *p = (nnd_prep){0};
}
