/* Where a net came from: every reader records its format and the file name (nnd_net_source,
 * nnd_net_source_name); a net built by calls has neither; folded steps are listed in order and
 * out-of-range queries give NULL. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "nnderiv.h"

#ifndef NND_TEST_DATA
#error "NND_TEST_DATA must name the test data directory"
#endif

static const struct {
    const char *file, *format;
} sources[] = {
    {NND_TEST_DATA "/fit_small.json", "nnderiv JSON"},
    {NND_TEST_DATA "/import/fit_cell_rows.m", "MATLAB genFunction code"},
    {NND_TEST_DATA "/import/onnx_tanh_f32.onnx", "ONNX"},
};

START_TEST(reader_records_its_format)
{
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load(sources[_i].file, &net);
    ck_assert_msg(s == NND_OK, "%s: %s", sources[_i].file, nnd_errmsg());
    const char *fmt = nnd_net_source(net), *name = nnd_net_source_name(net);
    ck_assert_msg(fmt && strcmp(fmt, sources[_i].format) == 0, "%s: source is '%s', expected '%s'",
                  sources[_i].file, fmt ? fmt : "(null)", sources[_i].format);
    ck_assert_msg(name && strcmp(name, sources[_i].file) == 0, "%s: source name is '%s'", sources[_i].file,
                  name ? name : "(null)");
    size_t n = nnd_net_n_folded(net);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(nnd_net_folded(net, i) && nnd_net_folded(net, i)[0], "%s: folded step %zu is empty",
                      sources[_i].file, i);
    ck_assert_msg(nnd_net_folded(net, n) == NULL, "%s: folded step %zu past the end is not NULL", sources[_i].file, n);
    nnd_net_free(net);
}
END_TEST

START_TEST(built_net_has_no_source)
{
    nnd_net *net = NULL;
    const double W[2] = {1, 2};
    ck_assert(nnd_net_new(2, &net) == NND_OK);
    ck_assert(nnd_net_add_dense(net, 1, W, NULL, NND_ACT_TANSIG) == NND_OK);
    ck_assert_msg(nnd_net_source(net) == NULL && nnd_net_source_name(net) == NULL, "a built net has a source");
    ck_assert_msg(nnd_net_n_folded(net) == 0 && nnd_net_folded(net, 0) == NULL, "a built net has folded steps");
    nnd_net_free(net);
    ck_assert(nnd_net_source(NULL) == NULL && nnd_net_n_folded(NULL) == 0 && nnd_net_folded(NULL, 0) == NULL);
}
END_TEST

START_TEST(buffer_name_is_the_source_name)
{
    static const char text[] = "{\"format\": \"nnderiv-mlp\", \"version\": 1, \"inputs\": 1, "
                               "\"layers\": [{\"weights\": [[2]], \"bias\": [0], \"activation\": \"purelin\"}]}";
    nnd_net *net = NULL;
    nnd_status s = nnd_net_load_buffer(text, sizeof text - 1, "mem.json", &net);
    ck_assert_msg(s == NND_OK, "buffer: %s", nnd_errmsg());
    ck_assert_msg(nnd_net_source_name(net) && strcmp(nnd_net_source_name(net), "mem.json") == 0,
                  "source name of a buffer");
    nnd_net_free(net);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("source");
    TCase *tc = tcase_create("source");
    tcase_add_loop_test(tc, reader_records_its_format, 0, (int)(sizeof sources / sizeof sources[0]));
    tcase_add_test(tc, built_net_has_no_source);
    tcase_add_test(tc, buffer_name_is_the_source_name);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
