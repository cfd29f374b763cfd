/* fuzz_common.h - what every libFuzzer target of chorus shares: one Lua
 * state built exactly as the binary builds it, a way to run Lua code in a
 * task while driving the loop, and Lua line coverage fed to libFuzzer. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* For LLVMFuzzerInitialize: adds -detect_leaks=0 to libFuzzer's arguments
 * unless the command line sets it. libFuzzer's leak check after each input
 * gives false reports here: LuaJIT allocates its heap with mmap, which
 * LeakSanitizer does not scan, so a malloc'd task or op that only a Lua
 * userdata points to looks leaked until the garbage collector frees it.
 * Leaks are still checked at exit, after fz_state's teardown freed
 * everything (as the binary does). Aborts when out of memory. */
void fz_init_args(int *argc, char ***argv);

/* The process-wide state, created on the first call: a libuv loop, a Lua
 * state with every native of runtime/rt_lua_boot.c, package.path rooted at
 * CHORUS_HOME (the source tree unless the environment says otherwise; plus
 * tests/fuzz/ for modules the harnesses share), and the harness module:
 * "fuzz_api" loads tests/fuzz/fuzz_api.lua, keeps the table it returns for
 * fz_harness_push and runs its setup() -> true | nil, err in a task. It is
 * torn down at exit as the binary does. Aborts when anything fails: a fuzz
 * target cannot run without it. */
lua_State *fz_state(const char *harness);

/* Pushes field `name` of the harness module (a function). */
void fz_harness_push(lua_State *L, const char *name);

/* Calls the function below its nargs arguments on the top of L's stack in
 * a new root task, and drives the loop (drain, then one libuv turn) until
 * the task is done. Pops the function and arguments, pushes what
 * task:result() gives (true, results... | nil, err) and returns how many
 * values it pushed. A task still not done after FZ_MAX_TURNS turns or
 * FZ_MAX_MS milliseconds (one waiting for something that never comes ends
 * there too) is a hang: the process aborts with a message, which libFuzzer
 * records as a crash. */
int fz_run(lua_State *L, int nargs);

/* Runs the harness's `one` function on data in a task; aborts with the
 * harness's message when it returns anything but true. The one call a
 * target's LLVMFuzzerTestOneInput needs. */
void fz_one(const char *harness, const unsigned char *data, size_t size);

/* For LLVMFuzzerCustomMutator: half the time libFuzzer's own byte-level
 * mutation; otherwise the harness's mutate(text, seed) -> text | nil (a
 * change that keeps the input's structure, see fuzz_mutate.lua), falling
 * back to libFuzzer's when it gives nothing that fits in max_size. Returns
 * the new size of data. Aborts when mutate raises. */
size_t fz_mutate(const char *harness, uint8_t *data, size_t size,
                 size_t max_size, unsigned int seed);

#endif
