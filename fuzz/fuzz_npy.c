/* libFuzzer target: the CLI's .npy reader (src/cli/arrays.c, compiled into the target). */
#include "fuzz_arrays.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nnd_fuzz_read_array(data, size, ".npy");
    return 0;
}
