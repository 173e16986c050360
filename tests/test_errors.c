/*
 * Errors: every failure path returns its status code and leaves a non-empty, fresh nnd_errmsg();
 * outputs are NULLed where the header says so; a failed call leaves its objects usable; every
 * object is freed (run under valgrind with CK_FORK=no to see no leaks).
 *
 * Where the header leaves the code open, the tests pin the library's convention: sizes of 0 and
 * indices out of range are NND_EDIM, NULL pointers, bad flags and unordered indices NND_EINVAL.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnderiv.h"

/* ---------------------------------------------------------------- helpers */

/* Make a failure with a message no test expects, so that a later check proves the call under test
 * wrote its own message. */
static const char *PRIMED = NULL;
static char primed_buf[512];

static void prime(void)
{
    double z = 0, f;
    nnd_act_eval(-424242, 0, 1, &z, &f, NULL, NULL);
    snprintf(primed_buf, sizeof primed_buf, "%s", nnd_errmsg());
    PRIMED = primed_buf;
}

static void expect_fail_at(const char *file, int line, const char *call, nnd_status got, nnd_status want)
{
    const char *msg = nnd_errmsg();
    ck_assert_msg(got == want, "%s:%d: %s returned %d (%s), expected %d (%s); message \"%s\"", file, line, call, (int)got,
                  nnd_strerror(got), (int)want, nnd_strerror(want), msg ? msg : "(NULL)");
    ck_assert_msg(msg != NULL && msg[0] != 0, "%s:%d: %s failed with an empty nnd_errmsg()", file, line, call);
    ck_assert_msg(!PRIMED || strcmp(msg, PRIMED) != 0, "%s:%d: %s did not set nnd_errmsg() (still \"%s\")", file, line,
                  call, msg);
}

/* EXPECT_FAIL(call, code): prime the message, run the call, check code and a fresh message. */
#define EXPECT_FAIL(call, code)                                                                    \
    do {                                                                                           \
        prime();                                                                                   \
        nnd_status s_ = (call);                                                                    \
        expect_fail_at(__FILE__, __LINE__, #call, s_, (code));                                     \
    } while (0)

#define EXPECT_OK(call)                                                                            \
    do {                                                                                           \
        nnd_status s_ = (call);                                                                    \
        ck_assert_msg(s_ == NND_OK, "%s returned %d (%s): %s", #call, (int)s_, nnd_strerror(s_), nnd_errmsg()); \
    } while (0)

/* A small valid net: 3 inputs -> 4 tansig -> 2 purelin. */
static const double W1[12] = {0.5, -0.3, 0.8, 0.1, 0.2, -0.7, 0.4, 0.9, -0.2, 0.6, -0.5, 0.3};
static const double B1[4] = {0.1, -0.2, 0.3, 0.0};
static const double W2[8] = {1.0, -0.5, 0.25, 0.75, -1.0, 0.5, 0.3, -0.2};
static const double X3[3] = {0.3, -1.2, 0.7};

static nnd_net *small_net(void)
{
    nnd_net *net = NULL;
    EXPECT_OK(nnd_net_new(3, &net));
    EXPECT_OK(nnd_net_add_dense(net, 4, W1, B1, NND_ACT_TANSIG));
    EXPECT_OK(nnd_net_add_dense(net, 2, W2, NULL, NND_ACT_PURELIN));
    return net;
}

/* y, J, H of the small net at X3 through a fresh plan. */
static void eval_all(const nnd_net *net, double y[2], double J[6], double H[18])
{
    nnd_plan *p = NULL;
    EXPECT_OK(nnd_plan_new(net, 1, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_AUTO, &p));
    EXPECT_OK(nnd_plan_execute(p, 1, X3, y, J, H));
    nnd_plan_free(p);
}

static void expect_same_as_small_net(const nnd_net *net, const char *after)
{
    double y0[2], J0[6], H0[18], y1[2], J1[6], H1[18];
    nnd_net *ref = small_net();
    eval_all(ref, y0, J0, H0);
    eval_all(net, y1, J1, H1);
    ck_assert_msg(memcmp(y0, y1, sizeof y0) == 0 && memcmp(J0, J1, sizeof J0) == 0 && memcmp(H0, H1, sizeof H0) == 0,
                  "after %s the net computes different numbers (y0 %.17g vs %.17g)", after, y1[0], y0[0]);
    nnd_net_free(ref);
}

/* Any non-NULL pointer value, to check that failing constructors reset *out to NULL. */
static int dummy_object;
#define NOT_NULL_NET ((nnd_net *)(void *)&dummy_object)
#define NOT_NULL_PLAN ((nnd_plan *)(void *)&dummy_object)

/* ---------------------------------------------------------------- status strings */

START_TEST(strerror_every_code_nonempty_and_distinct)
{
    const nnd_status codes[] = {NND_OK, NND_EINVAL, NND_EDIM, NND_ENOMEM, NND_EIO, NND_EFORMAT, NND_EUNSUPPORTED};
    const size_t nc = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < nc; i++) {
        const char *a = nnd_strerror(codes[i]);
        ck_assert_msg(a != NULL && a[0] != 0, "nnd_strerror(%d) is empty", (int)codes[i]);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(a, nnd_strerror(codes[j])) != 0, "nnd_strerror(%d) == nnd_strerror(%d) == \"%s\"",
                          (int)codes[i], (int)codes[j], a);
    }
    ck_assert_ptr_nonnull(nnd_strerror((nnd_status)99));
    ck_assert_ptr_nonnull(nnd_strerror((nnd_status)-1));
    ck_assert_ptr_nonnull(nnd_strerror((nnd_status)7));
}
END_TEST

START_TEST(errmsg_empty_before_any_failure_and_never_null)
{
    const char *m = nnd_errmsg();
    ck_assert_ptr_nonnull(m);
    const char *fork_env = getenv("CK_FORK");
    if (!fork_env || strcmp(fork_env, "no") != 0) ck_assert_str_eq(m, ""); /* a fresh process per test */
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", NND_VERSION_MAJOR, NND_VERSION_MINOR, NND_VERSION_PATCH);
    ck_assert_str_eq(nnd_version(), v);
}
END_TEST

/* ---------------------------------------------------------------- NULL pointers */

START_TEST(null_pointers_to_every_function)
{
    nnd_net *net = small_net();
    nnd_net *out = NOT_NULL_NET;
    const double v3[3] = {0, 0, 0}, g3[3] = {1, 1, 1};
    const size_t keep[1] = {0};
    double z = 0, f;

    EXPECT_FAIL(nnd_net_new(3, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_dense(NULL, 2, W2, NULL, NND_ACT_TANSIG), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_param(NULL, 0, 1.0), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_mapminmax(NULL, v3, g3, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_mapstd(NULL, v3, g3, 0), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(NULL, 1, keep), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_output_mapminmax(NULL, 2, v3, g3, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_output_mapstd(NULL, 2, v3, g3, 0), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_output_removeconstantrows(NULL, 3, 2, keep, v3), NND_EINVAL);
    EXPECT_FAIL(nnd_net_validate(NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_net_load(NULL, &out), NND_EINVAL);
    ck_assert_ptr_null(out);
    EXPECT_FAIL(nnd_net_load("/nonexistent/model.json", NULL), NND_EINVAL);
    out = NOT_NULL_NET;
    EXPECT_FAIL(nnd_net_load_buffer(NULL, 10, "buf", &out), NND_EINVAL);
    ck_assert_ptr_null(out);
    EXPECT_FAIL(nnd_net_load_buffer("{}", 2, "buf", NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_net_save_json(NULL, "/tmp/nnd_test_errors_null.json"), NND_EINVAL);
    EXPECT_FAIL(nnd_net_save_json(net, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_net_layer(NULL, 0, NULL, NULL, NULL, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_net_cost(NULL, NND_VALUE, NULL, NULL), NND_EINVAL);
    nnd_plan *plan = NOT_NULL_PLAN;
    EXPECT_FAIL(nnd_plan_new(NULL, 1, NND_VALUE, NND_MODE_AUTO, &plan), NND_EINVAL);
    ck_assert_ptr_null(plan);
    EXPECT_FAIL(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, NULL), NND_EINVAL);
    double y[2];
    EXPECT_FAIL(nnd_plan_execute(NULL, 1, X3, y, NULL, NULL), NND_EINVAL);
    double J[6], H[18];
    EXPECT_FAIL(nnd_fd_derivatives(NULL, X3, J, H), NND_EINVAL);
    EXPECT_FAIL(nnd_fd_derivatives(net, NULL, J, H), NND_EINVAL);
    EXPECT_FAIL(nnd_act_eval(NND_ACT_TANSIG, 0, 1, NULL, &f, NULL, NULL), NND_EINVAL);
    (void)z;

    /* NULL handles in the getters are harmless */
    ck_assert_uint_eq(nnd_net_n_in(NULL), 0);
    ck_assert_uint_eq(nnd_net_n_out(NULL), 0);
    ck_assert_uint_eq(nnd_net_n_layers(NULL), 0);
    ck_assert_uint_eq(nnd_net_n_params(NULL), 0);
    ck_assert_uint_eq(nnd_net_n_input_steps(NULL), 0);
    ck_assert_uint_eq(nnd_net_n_output_steps(NULL), 0);
    ck_assert_ptr_null(nnd_net_input_step_name(NULL, 0));
    ck_assert_ptr_null(nnd_net_output_step_name(NULL, 0));
    ck_assert_int_eq(nnd_act_from_name(NULL), -1);
    nnd_net_free(NULL);
    nnd_plan_free(NULL);

    nnd_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- building */

START_TEST(net_new_rejects_zero_inputs)
{
    nnd_net *net = NOT_NULL_NET;
    EXPECT_FAIL(nnd_net_new(0, &net), NND_EDIM);
    ck_assert_ptr_null(net);
}
END_TEST

START_TEST(add_dense_errors_leave_net_usable)
{
    nnd_net *net = NULL;
    EXPECT_OK(nnd_net_new(3, &net));
    EXPECT_FAIL(nnd_net_add_dense(net, 0, W1, B1, NND_ACT_TANSIG), NND_EDIM);
    EXPECT_FAIL(nnd_net_add_dense(net, 4, NULL, B1, NND_ACT_TANSIG), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_dense(net, 4, W1, B1, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_dense(net, 4, W1, B1, NND_ACT_COUNT), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_dense(net, 4, W1, B1, 12345), NND_EINVAL);
    double Wbad[12];
    memcpy(Wbad, W1, sizeof Wbad);
    Wbad[5] = NAN;
    EXPECT_FAIL(nnd_net_add_dense(net, 4, Wbad, B1, NND_ACT_TANSIG), NND_EINVAL);
    ck_assert_uint_eq(nnd_net_n_layers(net), 0);
    /* an empty net does not validate, plan or differentiate */
    EXPECT_FAIL(nnd_net_validate(net), NND_EDIM);
    nnd_plan *p = NOT_NULL_PLAN;
    EXPECT_FAIL(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, &p), NND_EDIM);
    ck_assert_ptr_null(p);
    double J[6];
    EXPECT_FAIL(nnd_fd_derivatives(net, X3, J, NULL), NND_EDIM);
    EXPECT_FAIL(nnd_net_cost(net, NND_VALUE, NULL, NULL), NND_EDIM);
    /* the failures left nothing behind: the same layers as small_net give the same numbers */
    EXPECT_OK(nnd_net_add_dense(net, 4, W1, B1, NND_ACT_TANSIG));
    EXPECT_FAIL(nnd_net_add_dense(net, 2, W2, NULL, -7), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_dense(net, 0, W2, NULL, NND_ACT_PURELIN), NND_EDIM);
    EXPECT_OK(nnd_net_add_dense(net, 2, W2, NULL, NND_ACT_PURELIN));
    ck_assert_uint_eq(nnd_net_n_layers(net), 2);
    ck_assert_uint_eq(nnd_net_n_out(net), 2);
    expect_same_as_small_net(net, "failed nnd_net_add_dense calls");
    nnd_net_free(net);
}
END_TEST

START_TEST(set_act_param_errors)
{
    nnd_net *net = NULL;
    EXPECT_OK(nnd_net_new(3, &net));
    EXPECT_OK(nnd_net_add_dense(net, 4, W1, B1, NND_ACT_ELU));
    EXPECT_OK(nnd_net_add_dense(net, 2, W2, NULL, NND_ACT_TANSIG));
    EXPECT_OK(nnd_net_set_act_param(net, 0, 0.5));
    EXPECT_FAIL(nnd_net_set_act_param(net, 1, 0.5), NND_EINVAL);  /* tansig has no parameter */
    EXPECT_FAIL(nnd_net_set_act_param(net, 2, 0.5), NND_EINVAL);  /* no such layer */
    EXPECT_FAIL(nnd_net_set_act_param(net, (size_t)-1, 0.5), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_param(net, 0, NAN), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_param(net, 0, INFINITY), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_param(net, 0, -INFINITY), NND_EINVAL);
    double param = 0;
    int act = -1;
    EXPECT_OK(nnd_net_layer(net, 0, NULL, NULL, &act, &param));
    ck_assert_int_eq(act, NND_ACT_ELU);
    ck_assert_msg(param == 0.5, "a failed set_act_param changed the parameter to %g", param);
    EXPECT_FAIL(nnd_net_layer(net, 2, NULL, NULL, NULL, NULL), NND_EINVAL);
    /* still plans and executes */
    nnd_plan *p = NULL;
    double y[2];
    EXPECT_OK(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, &p));
    EXPECT_OK(nnd_plan_execute(p, 1, X3, y, NULL, NULL));
    ck_assert(isfinite(y[0]) && isfinite(y[1]));
    nnd_plan_free(p);
    nnd_net_free(net);
}
END_TEST

/* Two-parameter activations: count, domain, and nothing changes on a failure. */
START_TEST(set_act_params_errors)
{
    nnd_net *net = NULL;
    const double ok2[2] = {-0.5, 2.0}, rev[2] = {2.0, -0.5}, nan2[2] = {0.1, NAN};
    EXPECT_OK(nnd_net_new(3, &net));
    EXPECT_OK(nnd_net_add_dense(net, 4, W1, B1, NND_ACT_CLIP));
    EXPECT_OK(nnd_net_add_dense(net, 2, W2, NULL, NND_ACT_CELU));
    EXPECT_FAIL(nnd_net_set_act_params(NULL, 0, 2, ok2), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_params(net, 0, 2, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_params(net, 0, 0, ok2), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_params(net, 0, 3, ok2), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_params(net, 1, 2, ok2), NND_EINVAL); /* celu has one */
    EXPECT_FAIL(nnd_net_set_act_params(net, 2, 1, ok2), NND_EINVAL); /* no such layer */
    EXPECT_FAIL(nnd_net_set_act_params(net, 0, 2, rev), NND_EINVAL); /* lo > hi */
    EXPECT_FAIL(nnd_net_set_act_params(net, 0, 2, nan2), NND_EINVAL);
    EXPECT_FAIL(nnd_net_set_act_param(net, 0, 1.5), NND_EINVAL);     /* lo 1.5 > default hi 1 */
    EXPECT_FAIL(nnd_net_set_act_param(net, 1, 0.0), NND_EINVAL);     /* celu alpha must be > 0 */
    EXPECT_FAIL(nnd_net_set_act_param(net, 1, -1.0), NND_EINVAL);
    double p[2];
    size_t count = 0;
    EXPECT_OK(nnd_net_layer_params(net, 0, &count, p));
    ck_assert_msg(count == 2 && p[0] == -1 && p[1] == 1, "clip after failures: %zu parameters %g, %g", count, p[0], p[1]);
    EXPECT_OK(nnd_net_set_act_params(net, 0, 2, ok2));
    EXPECT_OK(nnd_net_set_act_param(net, 0, 1.0)); /* only lo changes: hi stays 2 */
    EXPECT_OK(nnd_net_layer_params(net, 0, &count, p));
    ck_assert_msg(p[0] == 1.0 && p[1] == 2.0, "clip: %g, %g, expected 1, 2", p[0], p[1]);
    EXPECT_OK(nnd_net_layer_params(net, 1, &count, p));
    ck_assert_msg(count == 1 && p[0] == 1.0 && p[1] == 0.0, "celu: %zu parameters %g, %g", count, p[0], p[1]);
    EXPECT_FAIL(nnd_net_layer_params(NULL, 0, &count, p), NND_EINVAL);
    EXPECT_FAIL(nnd_net_layer_params(net, 2, &count, p), NND_EINVAL);
    EXPECT_OK(nnd_net_layer_params(net, 0, NULL, NULL));
    nnd_net_free(net);
}
END_TEST

START_TEST(input_processing_errors)
{
    nnd_net *net = NULL;
    const double off[3] = {0.1, 0.2, 0.3}, gain[3] = {1.5, 2.0, 0.5};
    EXPECT_OK(nnd_net_new(3, &net));
    EXPECT_FAIL(nnd_net_add_input_mapminmax(net, NULL, gain, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_mapminmax(net, off, NULL, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_mapstd(net, NULL, gain, 0), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_mapstd(net, off, NULL, 0), NND_EINVAL);
    const size_t k_range[2] = {0, 3}, k_unsorted[2] = {2, 1}, k_dup[2] = {1, 1}, k_ok[2] = {0, 2};
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 0, k_ok), NND_EDIM);
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 2, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 4, k_ok), NND_EDIM); /* keeps more than there are */
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 2, k_range), NND_EDIM);
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 2, k_unsorted), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 2, k_dup), NND_EINVAL);
    ck_assert_uint_eq(nnd_net_n_input_steps(net), 0);
    /* a valid one, after which the processed length is 2 */
    EXPECT_OK(nnd_net_add_input_removeconstantrows(net, 2, k_ok));
    const size_t k_now_out_of_range[1] = {2};
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 1, k_now_out_of_range), NND_EDIM);
    EXPECT_OK(nnd_net_add_input_mapminmax(net, off, gain, -1));
    ck_assert_uint_eq(nnd_net_n_input_steps(net), 2);
    ck_assert_str_eq(nnd_net_input_step_name(net, 0), "removeconstantrows");
    ck_assert_str_eq(nnd_net_input_step_name(net, 1), "mapminmax");
    ck_assert_ptr_null(nnd_net_input_step_name(net, 2));
    const double W[4] = {1, 2, 3, 4};
    EXPECT_OK(nnd_net_add_dense(net, 2, W, NULL, NND_ACT_TANSIG));
    /* input processing after a layer */
    EXPECT_FAIL(nnd_net_add_input_mapminmax(net, off, gain, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_mapstd(net, off, gain, 0), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_input_removeconstantrows(net, 1, k_ok), NND_EINVAL);
    ck_assert_uint_eq(nnd_net_n_input_steps(net), 2);
    EXPECT_OK(nnd_net_validate(net));
    nnd_net_free(net);
}
END_TEST

START_TEST(output_processing_errors)
{
    const double off[5] = {0.1, 0.2, 0.3, 0.4, 0.5}, gain[5] = {1.5, 2.0, 0.5, 1.0, 3.0}, cst[3] = {7, 8, 9};
    nnd_net *net = NULL;
    EXPECT_OK(nnd_net_new(3, &net));
    /* output processing needs the layers first */
    EXPECT_FAIL(nnd_net_add_output_mapminmax(net, 2, off, gain, -1), NND_EINVAL);
    nnd_net_free(net);

    net = small_net(); /* 2 outputs */
    EXPECT_FAIL(nnd_net_add_output_mapminmax(net, 0, off, gain, -1), NND_EDIM);
    EXPECT_FAIL(nnd_net_add_output_mapminmax(net, 2, NULL, gain, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_output_mapminmax(net, 2, off, NULL, -1), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_output_mapstd(net, 2, NULL, gain, 0), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_output_mapstd(net, 0, off, gain, 0), NND_EDIM);
    const size_t k_ok[2] = {1, 3}, k_range[2] = {1, 5}, k_unsorted[2] = {3, 1};
    EXPECT_FAIL(nnd_net_add_output_removeconstantrows(net, 5, 2, NULL, cst), NND_EINVAL);
    EXPECT_FAIL(nnd_net_add_output_removeconstantrows(net, 5, 2, k_ok, NULL), NND_EINVAL); /* constants needed */
    EXPECT_FAIL(nnd_net_add_output_removeconstantrows(net, 5, 0, k_ok, cst), NND_EDIM);
    EXPECT_FAIL(nnd_net_add_output_removeconstantrows(net, 1, 2, k_ok, cst), NND_EDIM); /* keeps more than rows */
    EXPECT_FAIL(nnd_net_add_output_removeconstantrows(net, 5, 2, k_range, cst), NND_EDIM);
    EXPECT_FAIL(nnd_net_add_output_removeconstantrows(net, 5, 2, k_unsorted, cst), NND_EINVAL);
    ck_assert_uint_eq(nnd_net_n_output_steps(net), 0);
    expect_same_as_small_net(net, "failed output processing calls");

    /* MATLAB order: 5 raw rows -> removeconstantrows keeps 2 -> mapminmax on 2: fits the 2 outputs */
    EXPECT_OK(nnd_net_add_output_removeconstantrows(net, 5, 2, k_ok, cst));
    /* the next step must take the 2 rows the previous one gives: either refused now or at planning */
    nnd_status s = nnd_net_add_output_mapminmax(net, 3, off, gain, -1);
    if (s == NND_OK) {
        nnd_plan *p = NOT_NULL_PLAN;
        EXPECT_FAIL(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, &p), NND_EDIM);
        ck_assert_ptr_null(p);
        nnd_net_free(net);
        net = small_net();
        EXPECT_OK(nnd_net_add_output_removeconstantrows(net, 5, 2, k_ok, cst));
    } else {
        expect_fail_at(__FILE__, __LINE__, "nnd_net_add_output_mapminmax(3 rows after a step giving 2)", s, NND_EDIM);
    }
    EXPECT_OK(nnd_net_add_output_mapminmax(net, 2, off, gain, -1));
    EXPECT_OK(nnd_net_validate(net));
    ck_assert_uint_eq(nnd_net_n_out(net), 5);
    ck_assert_str_eq(nnd_net_output_step_name(net, 0), "removeconstantrows");
    ck_assert_str_eq(nnd_net_output_step_name(net, 1), "mapminmax");
    /* no layers after output processing */
    EXPECT_FAIL(nnd_net_add_dense(net, 2, W2, NULL, NND_ACT_PURELIN), NND_EINVAL);
    nnd_plan *p = NULL;
    double y[5];
    EXPECT_OK(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, &p));
    EXPECT_OK(nnd_plan_execute(p, 1, X3, y, NULL, NULL));
    ck_assert(y[0] == 7 && y[2] == 8 && y[4] == 9);
    nnd_plan_free(p);
    nnd_net_free(net);

    /* lengths that disagree with the last layer: the planner says NND_EDIM */
    net = small_net();
    EXPECT_OK(nnd_net_add_output_mapminmax(net, 3, off, gain, -1));
    EXPECT_FAIL(nnd_net_validate(net), NND_EDIM);
    p = NOT_NULL_PLAN;
    EXPECT_FAIL(nnd_plan_new(net, 4, NND_VALUE | NND_JACOBIAN, NND_MODE_FORWARD, &p), NND_EDIM);
    ck_assert_ptr_null(p);
    EXPECT_FAIL(nnd_net_cost(net, NND_VALUE, NULL, NULL), NND_EDIM);
    double J[18];
    EXPECT_FAIL(nnd_fd_derivatives(net, X3, J, NULL), NND_EDIM);
    nnd_net_free(net);

    net = small_net();
    const size_t k3[3] = {0, 1, 2};
    EXPECT_OK(nnd_net_add_output_removeconstantrows(net, 4, 3, k3, cst)); /* gives 3, the net has 2 */
    p = NOT_NULL_PLAN;
    EXPECT_FAIL(nnd_plan_new(net, 1, NND_HESSIAN, NND_MODE_REVERSE, &p), NND_EDIM);
    ck_assert_ptr_null(p);
    nnd_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- planning and executing */

START_TEST(plan_new_errors)
{
    nnd_net *net = small_net();
    nnd_plan *p = NOT_NULL_PLAN;
    EXPECT_FAIL(nnd_plan_new(net, 1, 0, NND_MODE_AUTO, &p), NND_EINVAL);
    ck_assert_ptr_null(p);
    p = NOT_NULL_PLAN;
    EXPECT_FAIL(nnd_plan_new(net, 1, 8, NND_MODE_AUTO, &p), NND_EINVAL);
    ck_assert_ptr_null(p);
    EXPECT_FAIL(nnd_plan_new(net, 1, NND_VALUE | 16u, NND_MODE_AUTO, &p), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_new(net, 1, 0xFFFFFFFFu, NND_MODE_AUTO, &p), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_new(net, 0, NND_VALUE, NND_MODE_AUTO, &p), NND_EINVAL);
    ck_assert_ptr_null(p);
    EXPECT_FAIL(nnd_plan_new(net, 1, NND_VALUE, (nnd_mode)(NND_MODE_MEASURE + 1), &p), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_new(net, 1, NND_VALUE, (nnd_mode)-1, &p), NND_EINVAL);
    ck_assert_ptr_null(p);
    double cf, cr;
    EXPECT_FAIL(nnd_net_cost(net, 0, &cf, &cr), NND_EINVAL);
    EXPECT_FAIL(nnd_net_cost(net, 8, &cf, &cr), NND_EINVAL);
    EXPECT_OK(nnd_net_cost(net, NND_HESSIAN, &cf, &cr));
    ck_assert(cf > 0 && cr > 0);
    /* the net still plans */
    EXPECT_OK(nnd_plan_new(net, 1, NND_VALUE, NND_MODE_AUTO, &p));
    ck_assert_ptr_nonnull(p);
    nnd_plan_free(p);
    nnd_net_free(net);
}
END_TEST

START_TEST(execute_errors_leave_plan_usable)
{
    nnd_net *net = small_net();
    double y0[2], J0[6], H0[18];
    eval_all(net, y0, J0, H0);
    double y[4], J[12], H[36], x2[6];
    memcpy(x2, X3, sizeof X3);
    memcpy(x2 + 3, X3, sizeof X3);

    nnd_plan *pv = NULL, *pall = NULL, *pjh = NULL;
    EXPECT_OK(nnd_plan_new(net, 2, NND_VALUE, NND_MODE_AUTO, &pv));
    EXPECT_OK(nnd_plan_new(net, 2, NND_VALUE | NND_JACOBIAN | NND_HESSIAN, NND_MODE_REVERSE, &pall));
    EXPECT_OK(nnd_plan_new(net, 2, NND_JACOBIAN | NND_HESSIAN, NND_MODE_FORWARD, &pjh));

    /* batch > max_batch */
    EXPECT_FAIL(nnd_plan_execute(pv, 3, x2, y, NULL, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pall, 1000, x2, y, J, H), NND_EINVAL);
    /* NULL x */
    EXPECT_FAIL(nnd_plan_execute(pv, 1, NULL, y, NULL, NULL), NND_EINVAL);
    /* asking for outputs that were not planned: a non-NULL pointer is asking */
    EXPECT_FAIL(nnd_plan_execute(pv, 1, X3, y, J, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pv, 1, X3, y, NULL, H), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pjh, 1, X3, y, J, H), NND_EINVAL);
    /* NULL for a planned output */
    EXPECT_FAIL(nnd_plan_execute(pv, 1, X3, NULL, NULL, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pall, 1, X3, NULL, J, H), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pall, 1, X3, y, NULL, H), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pall, 1, X3, y, J, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pjh, 1, X3, NULL, NULL, H), NND_EINVAL);
    EXPECT_FAIL(nnd_plan_execute(pjh, 1, X3, NULL, J, NULL), NND_EINVAL);

    /* after all that, the plans compute the right numbers */
    EXPECT_OK(nnd_plan_execute(pv, 2, x2, y, NULL, NULL));
    ck_assert(memcmp(y, y0, sizeof y0) == 0 && memcmp(y + 2, y0, sizeof y0) == 0);
    EXPECT_OK(nnd_plan_execute(pall, 2, x2, y, J, H));
    for (int i = 0; i < 2; i++) ck_assert_msg(fabs(y[i] - y0[i]) <= 1e-14 && fabs(y[2 + i] - y0[i]) <= 1e-14, "y");
    for (int i = 0; i < 6; i++) ck_assert_msg(fabs(J[i] - J0[i]) <= 1e-14 && fabs(J[6 + i] - J0[i]) <= 1e-14, "J");
    for (int i = 0; i < 18; i++) ck_assert_msg(fabs(H[i] - H0[i]) <= 1e-14 && fabs(H[18 + i] - H0[i]) <= 1e-14, "H");
    EXPECT_OK(nnd_plan_execute(pjh, 1, X3, NULL, J, H));
    for (int i = 0; i < 6; i++) ck_assert_msg(fabs(J[i] - J0[i]) <= 1e-14, "J");
    /* batch 0 is a no-op */
    EXPECT_OK(nnd_plan_execute(pall, 0, x2, y, J, H));

    nnd_plan_free(pv);
    nnd_plan_free(pall);
    nnd_plan_free(pjh);
    nnd_net_free(net);
}
END_TEST

/* ---------------------------------------------------------------- files */

START_TEST(load_and_save_errors)
{
    nnd_net *net = NOT_NULL_NET;
    EXPECT_FAIL(nnd_net_load("/nonexistent/dir/model.json", &net), NND_EIO);
    ck_assert_ptr_null(net);
    net = NOT_NULL_NET;
    EXPECT_FAIL(nnd_net_load("/", &net), NND_EIO); /* a directory cannot be read */
    ck_assert_ptr_null(net);
    const char junk[] = "this is not a model";
    net = NOT_NULL_NET;
    EXPECT_FAIL(nnd_net_load_buffer(junk, sizeof junk - 1, "junk", &net), NND_EFORMAT);
    ck_assert_ptr_null(net);
    EXPECT_FAIL(nnd_net_load_buffer(junk, 0, NULL, &net), NND_EFORMAT);
    ck_assert_ptr_null(net);

    nnd_net *small = small_net();
    EXPECT_FAIL(nnd_net_save_json(small, "/nonexistent/dir/model.json"), NND_EIO);
    EXPECT_FAIL(nnd_net_save_json(small, ""), NND_EINVAL);
    /* and the net can still be saved and loaded back */
    char path[] = "/tmp/nnd_test_errors_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    EXPECT_OK(nnd_net_save_json(small, path));
    nnd_net *back = NULL;
    EXPECT_OK(nnd_net_load(path, &back));
    expect_same_as_small_net(back, "a save/load round trip");
    unlink(path);
    nnd_net_free(back);
    nnd_net_free(small);
}
END_TEST

/* ---------------------------------------------------------------- activations */

START_TEST(act_eval_errors)
{
    double z = 0.5, f;
    EXPECT_FAIL(nnd_act_eval(-1, 0, 1, &z, &f, NULL, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_act_eval(NND_ACT_COUNT, 0, 1, &z, &f, NULL, NULL), NND_EINVAL);
    EXPECT_FAIL(nnd_act_eval(NND_ACT_SOFTMAX, 0, 1, &z, &f, NULL, NULL), NND_EUNSUPPORTED);
    EXPECT_FAIL(nnd_act_eval(NND_ACT_TANSIG, 0, 1, NULL, &f, NULL, NULL), NND_EINVAL);
    ck_assert_ptr_null(nnd_act_name(-1));
    ck_assert_ptr_null(nnd_act_name(NND_ACT_COUNT));
    ck_assert_int_eq(nnd_act_from_name("no-such-activation"), -1);
    /* still works */
    EXPECT_OK(nnd_act_eval(NND_ACT_TANSIG, 0, 1, &z, &f, NULL, NULL));
    ck_assert(fabs(f - tanh(0.5)) < 1e-15);
}
END_TEST

/* ---------------------------------------------------------------- a message names the problem */

START_TEST(messages_are_specific)
{
    nnd_net *net = small_net();
    EXPECT_FAIL(nnd_net_set_act_param(net, 7, 1.0), NND_EINVAL);
    const char *m = nnd_errmsg();
    ck_assert_msg(strstr(m, "7") != NULL, "message for layer 7 does not name it: \"%s\"", m);
    nnd_net *out = NULL;
    EXPECT_FAIL(nnd_net_load("/nonexistent/dir/zz_model.json", &out), NND_EIO);
    m = nnd_errmsg();
    ck_assert_msg(strstr(m, "zz_model.json") != NULL, "message does not name the file: \"%s\"", m);
    nnd_net_free(net);
}
END_TEST

static Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, strerror_every_code_nonempty_and_distinct);
    tcase_add_test(tc, errmsg_empty_before_any_failure_and_never_null);
    tcase_add_test(tc, null_pointers_to_every_function);
    tcase_add_test(tc, net_new_rejects_zero_inputs);
    tcase_add_test(tc, add_dense_errors_leave_net_usable);
    tcase_add_test(tc, set_act_param_errors);
    tcase_add_test(tc, set_act_params_errors);
    tcase_add_test(tc, input_processing_errors);
    tcase_add_test(tc, output_processing_errors);
    tcase_add_test(tc, plan_new_errors);
    tcase_add_test(tc, execute_errors_leave_plan_usable);
    tcase_add_test(tc, load_and_save_errors);
    tcase_add_test(tc, act_eval_errors);
    tcase_add_test(tc, messages_are_specific);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(errors_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
