/* rt_lua_boot.h - builds the Lua state of a chorus process: package.path
 * and the chorus.native table with every binding. Shared by the binary
 * (main.c) and the fuzz targets (tests/fuzz), so both see the same natives. */
#ifndef RT_LUA_BOOT_H
#define RT_LUA_BOOT_H

#include <lua.h>
#include <uv.h>

#include "rt_lua_sched.h"
#include "rt_lua_stdin.h"

/* Set by CMake for the binary and the fuzz targets (the source tree and
 * the project version); these fallbacks only serve other builds. */
#ifndef CHORUS_DEFAULT_HOME
#define CHORUS_DEFAULT_HOME "."
#endif
#ifndef CHORUS_VERSION
#define CHORUS_VERSION "0.0.0"
#endif

/* Puts home/lua first on package.path, so our modules win. */
void rt_lua_boot_paths(lua_State *L, const char *home);

/* Creates the chorus.native module table (every binding, plus `home` and
 * `version`) and registers it in package.loaded. Returns the scheduler
 * context, with *in set to the stdin reader, or NULL when out of memory
 * (then *in may be NULL). The stack is left as it was. */
rt_lua_sched_t *rt_lua_boot_native(lua_State *L, uv_loop_t *loop,
                                   const char *home, const char *version,
                                   rt_lua_stdin_t **in);

#endif
