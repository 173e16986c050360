/* Absurd sizes: every size product is checked, so a huge dimension gives NND_EDIM or NND_ENOMEM
 * with a message, never a wrapped (too small) allocation that is then overrun. Builders, plans
 * and the JSON loader are driven with SIZE_MAX-scale sizes that they must refuse without
 * touching memory they do not have. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnderiv.h"
#include "rel.h"

static void assert_refused(nnd_status s, const char *what)
{
    ck_assert_msg(s == NND_EDIM || s == NND_ENOMEM || s == NND_EFORMAT,
                  "%s: expected NND_EDIM, NND_ENOMEM or NND_EFORMAT, got %d (%s)", what, (int)s, nnd_strerror(s));
    ck_assert_msg(nnd_errmsg()[0] != '\0', "%s: no message", what);
}

/* n_out x n_in weights that overflow size_t (or size_t bytes): refused before W is read. */
START_TEST(test_layer_weights_overflow)
{
    static const size_t n_in[] = {SIZE_MAX, SIZE_MAX / 2 + 1, (size_t)1 << 32, SIZE_MAX / 8 + 1};
    static const size_t n_out[] = {2, 2, (size_t)1 << 32, 1};
    double w[4] = {0};
    for (size_t i = 0; i < sizeof n_in / sizeof n_in[0]; i++) {
        nnd_net *net;
        ck_assert_int_eq(nnd_net_new(n_in[i], &net), NND_OK);
        nnd_status s = nnd_net_add_dense(net, n_out[i], w, NULL, NND_ACT_TANSIG);
        ck_assert_msg(s == NND_EDIM, "%zu x %zu weights: got %s", n_out[i], n_in[i], nnd_strerror(s));
        ck_assert_msg(strstr(nnd_errmsg(), "overflow") != NULL, "message: %s", nnd_errmsg());
        ck_assert_uint_eq(nnd_net_n_layers(net), 0);
        nnd_net_free(net);
    }
}
END_TEST

/* nnd_whess_to_ipopt_lower with sizes whose products overflow: NND_EDIM, no memory touched. */
START_TEST(test_ipopt_lower_overflow)
{
    static const size_t batch[] = {SIZE_MAX, 1, 2, SIZE_MAX / 8 + 1, (size_t)1 << 31};
    static const size_t n[] = {SIZE_MAX, SIZE_MAX, (size_t)1 << 32, 1, (size_t)1 << 17};
    double H[1] = {0}, v[1] = {0};
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
        nnd_status s = nnd_whess_to_ipopt_lower(batch[i], n[i], H, v);
        ck_assert_msg(s == NND_EDIM, "batch %zu, n %zu: got %s", batch[i], n[i], nnd_strerror(s));
        ck_assert_msg(strstr(nnd_errmsg(), "overflow") != NULL, "message: %s", nnd_errmsg());
    }
}
END_TEST

/* A model path that is not a regular file and never ends (/dev/zero) is read up to the
 * documented cap, then refused with a message that says why. */
START_TEST(test_load_non_regular_file_is_capped)
{
    if (rel_quick()) {
        fprintf(stderr, "non-regular file cap: skipped under NND_REL_QUICK (reads 256 MiB; run in the plain and ASan steps)\n");
        return;
    }
    nnd_net *net = (nnd_net *)&net;
    nnd_status s = nnd_net_load("/dev/zero", &net);
    ck_assert_msg(s == NND_EIO, "/dev/zero: got %s (%s)", nnd_strerror(s), nnd_errmsg());
    ck_assert_ptr_null(net);
    ck_assert_msg(strstr(nnd_errmsg(), "not a regular file") != NULL, "message: %s", nnd_errmsg());
}
END_TEST

/* A net with SIZE_MAX (and other absurd) inputs, of which one is kept: valid, but its Hessian has
 * n(n+1)/2 entries per output, which overflows; planning must say so. */
static nnd_net *wide_input_net(size_t n_in)
{
    nnd_net *net;
    size_t keep = 0;
    double w = 0.5;
    ck_assert_int_eq(nnd_net_new(n_in, &net), NND_OK);
    nnd_status s = nnd_net_add_input_removeconstantrows(net, 1, &keep);
    if (s != NND_OK) { /* refusing here is allowed too, with a status and a message */
        assert_refused(s, "removeconstantrows of a huge input");
        nnd_net_free(net);
        return NULL;
    }
    ck_assert_int_eq(nnd_net_add_dense(net, 1, &w, NULL, NND_ACT_TANSIG), NND_OK);
    ck_assert_int_eq(nnd_net_validate(net), NND_OK);
    return net;
}

START_TEST(test_plan_huge_inputs)
{
    /* each with n(n+1) > SIZE_MAX; below that the sizes are merely huge, and then whether the
     * allocation succeeds depends on the machine */
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX / 2, (size_t)1 << 32, ((size_t)1 << 32) + 1, (size_t)1 << 40};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        nnd_net *net = wide_input_net(sizes[i]);
        if (!net)
            continue;
        for (unsigned what = NND_JACOBIAN; what <= (NND_VALUE | NND_JACOBIAN | NND_HESSIAN); what++) {
            for (int mode = 0; mode <= 2; mode++) {
                nnd_plan *plan = (nnd_plan *)&plan; /* must be reset to NULL */
                nnd_status s = nnd_plan_new(net, 1, what, (nnd_mode)mode, &plan);
                char what_s[96];
                snprintf(what_s, sizeof what_s, "plan, n_in %zu, what %u, mode %d", sizes[i], what, mode);
                if (what & (NND_JACOBIAN | NND_HESSIAN)) {
                    assert_refused(s, what_s);
                    ck_assert_ptr_null(plan);
                } else {
                    nnd_plan_free(plan);
                }
            }
        }
        nnd_net_free(net);
    }
}
END_TEST

/* max_batch is not part of the workspace: a plan for SIZE_MAX samples costs what a small one does. */
START_TEST(test_plan_huge_max_batch)
{
    nnd_net *net;
    double W1[12] = {0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1.0, 1.1, 1.2}, W2[4] = {1, -1, 0.5, 0.25};
    ck_assert_int_eq(nnd_net_new(3, &net), NND_OK);
    ck_assert_int_eq(nnd_net_add_dense(net, 4, W1, NULL, NND_ACT_TANSIG), NND_OK);
    ck_assert_int_eq(nnd_net_add_dense(net, 1, W2, NULL, NND_ACT_PURELIN), NND_OK);
    for (int mode = 1; mode <= 2; mode++) {
        nnd_plan *big, *small;
        unsigned what = NND_VALUE | NND_JACOBIAN | NND_HESSIAN;
        ck_assert_int_eq(nnd_plan_new(net, SIZE_MAX, what, (nnd_mode)mode, &big), NND_OK);
        ck_assert_int_eq(nnd_plan_new(net, 3, what, (nnd_mode)mode, &small), NND_OK);
        ck_assert_msg(nnd_plan_workspace_bytes(big) <= ((size_t)64 << 20), "workspace of a SIZE_MAX plan: %zu bytes",
                      nnd_plan_workspace_bytes(big));
        double x[9] = {0.1, 0.2, 0.3, -1, 0, 1, 2, -2, 0.5}, y[2][3], J[2][9], H[2][27];
        ck_assert_int_eq(nnd_plan_execute(big, 3, x, y[0], J[0], H[0]), NND_OK);
        ck_assert_int_eq(nnd_plan_execute(small, 3, x, y[1], J[1], H[1]), NND_OK);
        ck_assert(memcmp(y[0], y[1], sizeof y[0]) == 0 && memcmp(J[0], J[1], sizeof J[0]) == 0 &&
                  memcmp(H[0], H[1], sizeof H[0]) == 0);
        nnd_plan_free(big);
        nnd_plan_free(small);
    }
    nnd_net_free(net);
}
END_TEST

static nnd_status load_str(const char *json, nnd_net **net)
{
    return nnd_net_load_buffer(json, strlen(json), "huge.json", net);
}

/* A JSON file that claims huge sizes is refused with a message naming the file, before any
 * allocation of the claimed size; or it is valid (a kept subset of a huge input) and then
 * planning refuses it. */
START_TEST(test_json_huge_sizes)
{
    static const char *const refused[] = {
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":1e300,\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}]}",
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":18446744073709551616,\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}]}",
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":-1,\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}]}",
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":9223372036854775807,\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}]}",
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":1,\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}],"
        "\"output_processing\":[{\"type\":\"removeconstantrows\",\"rows\":9223372036854775807,\"keep\":[0],\"constants\":[]}]}",
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":1,\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}],"
        "\"output_processing\":[{\"type\":\"removeconstantrows\",\"rows\":2,\"keep\":[0, 9223372036854775807],\"constants\":[]}]}",
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":2,\"input_processing\":[{\"type\":\"removeconstantrows\","
        "\"rows\":9007199254740992.0,\"keep\":[0]}],\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}]}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        nnd_net *net = (nnd_net *)&net;
        nnd_status s = load_str(refused[i], &net);
        char what[32];
        snprintf(what, sizeof what, "huge JSON %zu", i);
        assert_refused(s, what);
        ck_assert_ptr_null(net);
        ck_assert_msg(strncmp(nnd_errmsg(), "huge.json", 9) == 0, "%s: message does not name the file: %s", what,
                      nnd_errmsg());
    }
    /* Valid: 2^53 and 2^64-1 inputs of which one is used. */
    static const char *const valid[] = {
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":18446744073709551615,\"input_processing\":"
        "[{\"type\":\"removeconstantrows\",\"keep\":[0]}],\"layers\":[{\"weights\":[[1]],\"activation\":\"tansig\"}]}",
        "{\"format\":\"nnderiv-mlp\",\"version\":1,\"inputs\":9007199254740992.0,\"input_processing\":"
        "[{\"type\":\"removeconstantrows\",\"keep\":[0, 9007199254740991]}],\"layers\":[{\"weights\":[[1, 2]],\"activation\":\"tansig\"}]}",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        nnd_net *net;
        nnd_status s = load_str(valid[i], &net);
        if (s == NND_OK) {
            nnd_plan *plan;
            assert_refused(nnd_plan_new(net, 1, NND_HESSIAN, NND_MODE_AUTO, &plan), "plan of a net with huge inputs");
            ck_assert_ptr_null(plan);
            nnd_net_free(net);
        } else {
            assert_refused(s, "huge but consistent JSON");
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sizes");
    TCase *tc = tcase_create("overflow");
    tcase_add_test(tc, test_layer_weights_overflow);
    tcase_add_test(tc, test_ipopt_lower_overflow);
    tcase_add_test(tc, test_load_non_regular_file_is_capped);
    tcase_add_test(tc, test_plan_huge_inputs);
    tcase_add_test(tc, test_plan_huge_max_batch);
    tcase_add_test(tc, test_json_huge_sizes);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
