/* fuzz_api.c - libFuzzer target: raw bytes -> a few HTTP requests ->
 * chorus.api's app:handle over a fresh memory store. The framing and the
 * checks on every response are in fuzz_api.lua (see its header). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init_args(argc, argv);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_one("fuzz_api", data, size);
    return 0;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    return fz_mutate("fuzz_api", data, size, max_size, seed);
}
