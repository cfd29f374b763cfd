/* fuzz_validate.c - libFuzzer target: raw bytes -> JSON document ->
 * validate.config against the built-in registry, with the checks of
 * fuzz_validate.lua (outcome shape, idempotence of the normalized form). */
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
    fz_one("fuzz_validate", data, size);
    return 0;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    return fz_mutate("fuzz_validate", data, size, max_size, seed);
}
