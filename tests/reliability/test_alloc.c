/* Allocation failure: with the test hook nnd__set_alloc_failure(k) the k-th allocation of the
 * library fails (and, through json_set_alloc_funcs, the k-th allocation of jansson). Swept over
 * every k for building, loading, saving, planning and finite differences, each case must
 *   - return NND_ENOMEM with a message,
 *   - set the out-pointer to NULL (constructors) and leak nothing,
 *   - leave the objects that existed usable: the same net then builds, plans and computes
 *     bit-identically to one built without failures.
 * Executing a plan must not allocate at all. Leaks are checked in-process by counting live heap
 * blocks (malloc and friends are wrapped at link time); ASan/LSan and valgrind check again in CI. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "net/internal.h"
#include "products/products.h"

/* ---------------------------------------------------------------- the net every case uses */

static const double xoff[3] = {-1, 0, 1}, gain[3] = {0.5, 2, 1.5};
static const size_t keep_in[2] = {0, 2};
static const double W1[5 * 2] = {0.3, -0.2, 0.5, 0.1, -0.4, 0.8, 0.2, 0.2, 0.9, -0.7};
static const double b1[5] = {0.1, -0.1, 0.2, 0, 0.05};
static const double W2[4 * 5] = {0.2, -0.3, 0.1, 0.4, -0.5, 0.6, 0.1, -0.2, 0.3, 0.2,
                                 -0.1, 0.5, 0.2, -0.4, 0.1, 0.3, 0.3, -0.3, 0.2, 0.1};
static const double W3[3 * 4] = {1, -1, 0.5, 0.25, -0.5, 0.75, 1.25, -1, 0.3, 0.2, 0.1, -0.6};
static const double oxoff[4] = {0.5, 0, -0.5, 1}, ogain[4] = {2, 1, 4, 0.5};
static const size_t keep_out[3] = {0, 2, 3};
static const double oconst[1] = {7.0};

#define N_STEPS 9

/* Step i of building the net; step 0 creates it. */
static nnd_status build_step(nnd_net **net, int i)
{
    switch (i) {
    case 0: return nnd_net_new(3, net);
    case 1: return nnd_net_add_input_mapminmax(*net, xoff, gain, -1);
    case 2: return nnd_net_add_input_removeconstantrows(*net, 2, keep_in);
    case 3: return nnd_net_add_dense(*net, 5, W1, b1, NND_ACT_TANSIG);
    case 4: return nnd_net_add_dense(*net, 4, W2, NULL, NND_ACT_ELU);
    case 5: return nnd_net_set_act_param(*net, 1, 0.7);
    case 6: return nnd_net_add_dense(*net, 3, W3, NULL, NND_ACT_SOFTMAX);
    case 7: return nnd_net_add_output_mapstd(*net, 4, oxoff, ogain, 0.25);
    case 8: return nnd_net_add_output_removeconstantrows(*net, 4, 3, keep_out, oconst);
    }
    abort();
}

static nnd_net *build_clean(void)
{
    nnd_net *net = NULL;
    for (int i = 0; i < N_STEPS; i++)
        ck_assert_msg(build_step(&net, i) == NND_OK, "step %d: %s", i, nnd_errmsg());
    return net;
}

/* ---------------------------------------------------------------- fault injection helpers */

/* After an operation ran with allocation k armed: 1 if the failure fired inside it, 0 if the
 * operation made fewer than k + 1 allocations (the countdown is then still armed and one of k + 1
 * probes meets it). Disarms in both cases. */
static int fired(long k)
{
    int hit = 1;
    for (long i = 0; i <= k && hit; i++) {
        void *p = nnd__malloc(1, 1);
        if (!p)
            hit = 0;
        nnd__free(p);
    }
    nnd__set_alloc_failure(-1);
    return hit;
}

/* jansson's allocations: the same countdown, for the parser and the writer. */
static long json_countdown = -1;
static int json_fired;

static void *json_failing_malloc(size_t n)
{
    if (json_countdown == 0) {
        json_countdown = -1;
        json_fired = 1;
        return NULL;
    }
    if (json_countdown > 0)
        json_countdown--;
    return malloc(n);
}

static void arm(int jansson, long k)
{
    if (jansson) {
        json_countdown = k;
        json_fired = 0;
    } else {
        nnd__set_alloc_failure(k);
    }
}

static int disarm(int jansson, long k)
{
    if (jansson) {
        json_countdown = -1;
        return json_fired;
    }
    return fired(k);
}

/* Live heap blocks. The test links with -Wl,--wrap=malloc,calloc,realloc,free, so every
 * allocation made by the library's objects (linked in statically), by this file and, through
 * json_set_alloc_funcs, by jansson passes here and is remembered until freed. Blocks that glibc
 * allocated internally (vasprintf for Check's messages, ...) are not in the table and not counted. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

#define TRACK_SLOTS (1u << 16)
static void *track[TRACK_SLOTS];
static const char tombstone;
static long live_blocks;

static size_t slot_of(const void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 48); }

static void track_add(void *p)
{
    if (!p)
        return;
    for (size_t i = slot_of(p), n = 0; n < TRACK_SLOTS; i = (i + 1) % TRACK_SLOTS, n++)
        if (!track[i] || track[i] == &tombstone) {
            track[i] = p;
            live_blocks++;
            return;
        }
    abort(); /* more than 65536 live blocks: not this test's nets */
}

static int track_remove(void *p)
{
    for (size_t i = slot_of(p), n = 0; p && track[i] && n < TRACK_SLOTS; i = (i + 1) % TRACK_SLOTS, n++)
        if (track[i] == p) {
            track[i] = (void *)&tombstone;
            live_blocks--;
            return 1;
        }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    void *p = __real_malloc(n);
    track_add(p);
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    void *p = __real_calloc(n, size);
    track_add(p);
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    int known = p && track_remove(p);
    void *q = __real_realloc(p, n);
    if (q && (known || !p))
        track_add(q);
    else if (!q && known && n) /* failed: p is still live */
        track_add(p);
    return q;
}

void __wrap_free(void *p)
{
    track_remove(p);
    __real_free(p);
}

static size_t in_use(void) { return (size_t)live_blocks; }

#define K_MAX 100000 /* far above any operation's allocations: a sweep that reaches it is a bug */

/* The reference outputs of the clean net at a fixed batch, per mode. */
enum { B = 3 };
static const double X[B * 3] = {0.3, -1.2, 2.0, -0.4, 0.0, 0.7, 1.5, 0.2, -2.5};
typedef struct {
    double y[B * 4], J[B * 4 * 3], H[B * 4 * 3 * 3];
} outputs;

static void compute(const nnd_net *net, nnd_mode mode, outputs *o)
{
    nnd_plan *plan;
    ck_assert_msg(nnd_plan_new(net, B, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, mode, &plan) == NND_OK, "plan: %s",
                  nnd_errmsg());
    ck_assert_int_eq(nnd_plan_execute(plan, B, X, o->y, o->J, o->H), NND_OK);
    nnd_plan_free(plan);
}

/* The net still works and gives exactly the outputs of a net built without failures. */
static void assert_same_as_clean(const nnd_net *net, const char *what)
{
    nnd_net *ref = build_clean();
    for (int mode = NND_MODE_FORWARD; mode <= NND_MODE_REVERSE; mode++) {
        outputs a, b;
        compute(net, (nnd_mode)mode, &a);
        compute(ref, (nnd_mode)mode, &b);
        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s: outputs differ from a net built without failures", what);
    }
    nnd_net_free(ref);
}

static void assert_enomem(nnd_status s, const char *what, long k)
{
    ck_assert_msg(s == NND_ENOMEM, "%s, allocation %ld failing: got %d (%s): %s", what, k, (int)s, nnd_strerror(s),
                  nnd_errmsg());
    ck_assert_msg(nnd_errmsg()[0] != '\0', "%s, allocation %ld failing: no message", what, k);
}

static void assert_no_leak(size_t before, const char *what, long k)
{
    size_t after = in_use();
    ck_assert_msg(after <= before, "%s, allocation %ld failing: %zu blocks leaked", what, k, after - before);
}

/* Warm up: OpenBLAS and jansson allocate once on first use; that is not a leak of ours. */
static void warm_up(void)
{
    nnd_net *net = build_clean();
    outputs o;
    compute(net, NND_MODE_FORWARD, &o);
    compute(net, NND_MODE_REVERSE, &o);
    nnd_net_free(net);
}

/* ---------------------------------------------------------------- the sweeps */

START_TEST(test_build_sweep)
{
    warm_up();
    long k;
    for (k = 0; k < K_MAX; k++) {
        size_t before = in_use();
        nnd_net *net = NULL;
        int failed_at = -1;
        arm(0, k);
        for (int i = 0; i < N_STEPS && failed_at < 0; i++) {
            nnd_status s = build_step(&net, i);
            if (s != NND_OK) {
                assert_enomem(s, "building", k);
                failed_at = i;
            }
        }
        int hit = disarm(0, k);
        if (failed_at < 0) {
            ck_assert_msg(!hit, "building: allocation %ld failed but every step returned NND_OK", k);
            nnd_net_free(net);
            break;
        }
        if (failed_at == 0) {
            ck_assert_ptr_null(net);
        } else {
            /* the net that existed is usable: finish it from the failed step */
            for (int i = failed_at; i < N_STEPS; i++)
                ck_assert_msg(build_step(&net, i) == NND_OK, "step %d after a failure: %s", i, nnd_errmsg());
            assert_same_as_clean(net, "building resumed after a failure");
        }
        nnd_net_free(net);
        assert_no_leak(before, "building", k);
    }
    ck_assert_msg(k < K_MAX && k > 0, "building: sweep did not end (k = %ld)", k);
    printf("alloc: building a net: %ld allocation points, each fails cleanly\n", k);
}
END_TEST

static char model_path[256];

/* jansson 2.14's parser reports an allocation failure inside its lexer (the first allocation of
 * json_loadb, and the buffers of strings and keys) as a syntax error, with code
 * json_error_invalid_syntax or none, so the loader can only pass it on as NND_EFORMAT. For
 * jansson's allocations NND_EFORMAT is therefore accepted too (still with a NULL net, a message
 * and no leak), and the cases are counted and reported. */
static void write_model(void)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(model_path, sizeof model_path, "%s/nnd_rel_alloc_%ld.json", dir, (long)getpid());
    nnd_net *net = build_clean();
    ck_assert_msg(nnd_net_save_json(net, model_path) == NND_OK, "save: %s", nnd_errmsg());
    nnd_net_free(net);
}

START_TEST(test_load_sweep)
{
    warm_up();
    write_model();
    for (int jansson = 0; jansson < 2; jansson++) {
        long k, silent = 0;
        for (k = 0; k < K_MAX; k++) {
            size_t before = in_use();
            nnd_net *net = (nnd_net *)&net;
            arm(jansson, k);
            nnd_status s = nnd_net_load(model_path, &net);
            int hit = disarm(jansson, k);
            if (s == NND_OK) {
                ck_assert_msg(!hit, "loading: allocation %ld failed but nnd_net_load returned NND_OK", k);
                assert_same_as_clean(net, "loaded net");
                nnd_net_free(net);
                break;
            }
            if (jansson && s == NND_EFORMAT && nnd_errmsg()[0]) {
                silent++;
            } else {
                assert_enomem(s, jansson ? "loading (jansson)" : "loading", k);
            }
            ck_assert_ptr_null(net);
            assert_no_leak(before, "loading", k);
        }
        ck_assert_msg(k < K_MAX && k > 0, "loading: sweep did not end");
        printf("alloc: loading a JSON model: %ld %s allocation points, each fails cleanly%s\n", k,
               jansson ? "jansson" : "library",
               silent ? " (jansson reports some as syntax errors: NND_EFORMAT)" : "");
        if (silent)
            printf("alloc: loading: %ld of the %ld jansson allocation failures came back as NND_EFORMAT\n", silent, k);
    }
    unlink(model_path);
}
END_TEST

START_TEST(test_save_sweep)
{
    warm_up();
    write_model();
    nnd_net *net = build_clean();
    for (int jansson = 0; jansson < 2; jansson++) {
        long k;
        for (k = 0; k < K_MAX; k++) {
            size_t before = in_use();
            arm(jansson, k);
            nnd_status s = nnd_net_save_json(net, model_path);
            int hit = disarm(jansson, k);
            if (s == NND_OK) {
                ck_assert_msg(!hit, "saving: allocation %ld failed but nnd_net_save_json returned NND_OK", k);
                break;
            }
            assert_enomem(s, jansson ? "saving (jansson)" : "saving", k);
            assert_no_leak(before, "saving", k);
            /* the previous file is intact: it still loads */
            nnd_net *again;
            ck_assert_msg(nnd_net_load(model_path, &again) == NND_OK, "after a failed save: %s", nnd_errmsg());
            nnd_net_free(again);
        }
        ck_assert_msg(k < K_MAX && k > 0, "saving: sweep did not end");
        printf("alloc: saving a JSON model: %ld %s allocation points, each fails cleanly\n", k,
               jansson ? "jansson" : "library");
    }
    assert_same_as_clean(net, "net after failed saves");
    nnd_net_free(net);
    unlink(model_path);
}
END_TEST

START_TEST(test_plan_sweep)
{
    warm_up();
    nnd_net *net = build_clean();
    static const unsigned whats[] = {NND_VALUE, NND_JACOBIAN, NND_VALUE | NND_HESSIAN,
                                     NND_VALUE | NND_JACOBIAN | NND_HESSIAN};
    /* max_batch 7 is one block; 5000 is several, so a multi-threaded plan makes its peers */
    static const size_t max_batches[] = {7, 5000};
    long points = 0;
    for (size_t w = 0; w < sizeof whats / sizeof whats[0]; w++)
        for (int mode = NND_MODE_AUTO; mode <= NND_MODE_MEASURE; mode++)
            for (size_t mb = 0; mb < 2; mb++) {
                long k;
                for (k = 0; k < K_MAX; k++) {
                    size_t before = in_use();
                    nnd_plan *plan = (nnd_plan *)&plan;
                    arm(0, k);
                    nnd_status s = nnd_plan_new(net, max_batches[mb], whats[w], (nnd_mode)mode, &plan);
                    int hit = disarm(0, k);
                    if (s == NND_OK) {
                        ck_assert_msg(!hit, "planning: allocation %ld failed but nnd_plan_new returned NND_OK", k);
                        nnd_plan_free(plan);
                        break;
                    }
                    assert_enomem(s, "planning", k);
                    ck_assert_ptr_null(plan);
                    assert_no_leak(before, "planning", k);
                }
                ck_assert_msg(k < K_MAX && k > 0, "planning: sweep did not end");
                points += k;
            }
    assert_same_as_clean(net, "net after failed plans");
    nnd_net_free(net);
    printf("alloc: planning (4 outputs x 4 modes x 2 batch sizes): %ld allocation points, each fails cleanly\n",
           points);
}
END_TEST

/* The net of build_clean without its softmax layer (tansig, elu, purelin): the fused engine takes
 * it, so the products contract its J and H (the FULL path). */
static nnd_net *build_small(void)
{
    nnd_net *net = NULL;
    for (int i = 0; i < N_STEPS; i++)
        ck_assert_msg((i == 6 ? nnd_net_add_dense(net, 3, W3, NULL, NND_ACT_PURELIN) : build_step(&net, i)) == NND_OK,
                      "step %d: %s", i, nnd_errmsg());
    return net;
}

/* Every kind, on one thread and on two (two slots, each with its scratch or engine workspace), on
 * the net of every case (the blocked, directional and HVP engines) and on one the fused engine
 * takes (every path forced in turn: FULL, the general one). */
START_TEST(test_product_plan_sweep)
{
    warm_up();
    nnd_net *nets[2] = {build_clean(), build_small()};
    long points = 0;
    static const size_t batches[2] = {7, 50000}, threads[2] = {1, 2};
    static const int engines[2] = {NND__PRODUCT_FUSED, NND__PRODUCT_GENERAL};
    for (int ni = 0; ni < 2; ni++)
        for (int e = 0; e < (ni ? 2 : 1); e++)
            for (int c = 0; c < 2; c++)
                for (int kind = NND_PRODUCT_WHESS; kind <= NND_PRODUCT_UNCERTAINTY_SHARED; kind++) {
                    int engine = ni ? engines[e] : NND__PRODUCT_AUTO;
                    long k;
                    for (k = 0; k < K_MAX; k++) {
                        size_t before = in_use();
                        nnd_product_plan *plan = (nnd_product_plan *)&plan;
                        arm(0, k);
                        nnd_status s = nnd__product_plan_new_engine(nets[ni], batches[c], (nnd_product)kind, threads[c],
                                                                    engine, &plan);
                        int hit = disarm(0, k);
                        if (s == NND_OK) {
                            ck_assert_msg(!hit, "product %s: allocation %ld failed but planning returned NND_OK",
                                          nnd_product_name((nnd_product)kind), k);
                            ck_assert_uint_eq(nnd_product_plan_threads(plan), threads[c]);
                            ck_assert_int_eq(nnd__product_plan_full(plan),
                                             engine == NND__PRODUCT_FUSED && kind != NND_PRODUCT_WHESS &&
                                                 kind != NND_PRODUCT_VJP);
                            nnd_product_plan_free(plan);
                            break;
                        }
                        assert_enomem(s, "product planning", k);
                        ck_assert_ptr_null(plan);
                        assert_no_leak(before, "product planning", k);
                    }
                    ck_assert_msg(k < K_MAX && k > 0, "product planning: sweep did not end");
                    points += k;
                }
    assert_same_as_clean(nets[0], "net after failed product plans");
    nnd_net_free(nets[0]);
    nnd_net_free(nets[1]);
    printf("alloc: product planning (8 kinds, 1 and 2 threads, every path): %ld allocation points, each fails "
           "cleanly\n", points);
}
END_TEST

/* A product plan's execute allocates nothing (on the calling thread, which runs one of its two
 * threads' shares: the countdown is per thread). */
START_TEST(test_product_execute_does_not_allocate)
{
    warm_up();
    nnd_net *nets[2] = {build_clean(), build_small()};
    size_t n = 3, m = 4, batch = 50000;
    double *x = malloc(batch * n * sizeof *x), *in = malloc(batch * n * n * sizeof *in);
    double *out = malloc(batch * n * n * m * sizeof *out), *out2 = malloc(batch * m * sizeof *out2);
    ck_assert(x && in && out && out2);
    for (size_t b = 0; b < batch; b++) {
        memcpy(x + b * n, X + (b % B) * n, n * sizeof *x);
        for (size_t i = 0; i < n * n; i++)
            in[b * n * n + i] = i % (n + 1) == 0 ? 1.0 : 0.1; /* Sigma: 1 on the diagonal, 0.1 off it */
    }
    for (int pk = 0; pk < 24; pk++) { /* every kind: the net of every case, the small one by both paths */
        int kind = NND_PRODUCT_WHESS + pk % 8, engine = pk < 8 ? NND__PRODUCT_AUTO : pk < 16 ? NND__PRODUCT_FUSED
                                                                                              : NND__PRODUCT_GENERAL;
        nnd_product_plan *plan;
        ck_assert_int_eq(nnd__product_plan_new_engine(nets[pk >= 8], batch, (nnd_product)kind, 2, engine, &plan),
                         NND_OK);
        int has2 = kind == NND_PRODUCT_WHESS || kind >= NND_PRODUCT_UNCERTAINTY;
        const double *pin = kind == NND_PRODUCT_LAPLACIAN || kind == NND_PRODUCT_HDIAG ? NULL : in;
        /* two blocks: one per thread */
        size_t nb = 2 * nnd_product_plan_block(plan) < batch ? 2 * nnd_product_plan_block(plan) : batch;
        ck_assert_uint_eq(nnd_product_plan_threads(plan), 2);
        for (int rep = 0; rep < 2; rep++) { /* the first run starts the worker */
            arm(0, 0);
            ck_assert_msg(nnd_product_execute(plan, nb, x, pin, out, has2 ? out2 : NULL) == NND_OK, "%s: %s",
                          nnd_product_name((nnd_product)kind), nnd_errmsg());
            ck_assert_msg(!disarm(0, 0), "nnd_product_execute(%s) allocated", nnd_product_name((nnd_product)kind));
        }
        nnd_product_plan_free(plan);
    }
    free(x), free(in), free(out), free(out2);
    nnd_net_free(nets[0]);
    nnd_net_free(nets[1]);
}
END_TEST

START_TEST(test_execute_does_not_allocate)
{
    warm_up();
    nnd_net *net = build_clean();
    for (int mode = NND_MODE_FORWARD; mode <= NND_MODE_REVERSE; mode++) {
        nnd_plan *plan;
        outputs o;
        ck_assert_int_eq(nnd_plan_new(net, B, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, (nnd_mode)mode, &plan), NND_OK);
        arm(0, 0);
        ck_assert_int_eq(nnd_plan_execute(plan, B, X, o.y, o.J, o.H), NND_OK);
        ck_assert_msg(!disarm(0, 0), "nnd_plan_execute allocated (mode %d)", mode);
        nnd_plan_free(plan);
    }
    nnd_net_free(net);
}
END_TEST

START_TEST(test_fd_sweep)
{
    warm_up();
    nnd_net *net = build_clean();
    double J[4 * 3], H[4 * 3 * 3], J0[4 * 3], H0[4 * 3 * 3];
    ck_assert_int_eq(nnd_fd_derivatives(net, X, J0, H0), NND_OK);
    long k;
    for (k = 0; k < K_MAX; k++) {
        size_t before = in_use();
        arm(0, k);
        nnd_status s = nnd_fd_derivatives(net, X, J, H);
        int hit = disarm(0, k);
        if (s == NND_OK) {
            ck_assert_msg(!hit, "finite differences: allocation %ld failed but the call returned NND_OK", k);
            ck_assert(memcmp(J, J0, sizeof J) == 0 && memcmp(H, H0, sizeof H) == 0);
            break;
        }
        assert_enomem(s, "finite differences", k);
        assert_no_leak(before, "finite differences", k);
    }
    ck_assert_msg(k < K_MAX, "finite differences: sweep did not end");
    nnd_net_free(net);
    printf("alloc: finite differences: %ld allocation points, each fails cleanly\n", k);
}
END_TEST

int main(void)
{
    json_set_alloc_funcs(json_failing_malloc, free);
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("fault injection");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_build_sweep);
    tcase_add_test(tc, test_load_sweep);
    tcase_add_test(tc, test_save_sweep);
    tcase_add_test(tc, test_plan_sweep);
    tcase_add_test(tc, test_product_plan_sweep);
    tcase_add_test(tc, test_product_execute_does_not_allocate);
    tcase_add_test(tc, test_execute_does_not_allocate);
    tcase_add_test(tc, test_fd_sweep);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
