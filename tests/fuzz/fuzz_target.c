/* fuzz_target.c - the libFuzzer entry points of one target, built once per
 * target with FZ_TARGET set to its name (CMakeLists.txt): the harness is
 * tests/fuzz/<FZ_TARGET>.lua, everything else is in fuzz_common.c. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

#ifndef FZ_TARGET
#error "build with -DFZ_TARGET=\"fuzz_<name>\""
#endif

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
    fz_one(FZ_TARGET, data, size);
    return 0;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    return fz_mutate(FZ_TARGET, data, size, max_size, seed);
}
