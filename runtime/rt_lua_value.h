/* rt_lua_value.h - size, depth and text checks of values bound for
 * records (native.value_check, native.utf8_repair). */
#ifndef RT_LUA_VALUE_H
#define RT_LUA_VALUE_H

#include <lua.h>
#include <stddef.h>

/* Adds value_check and utf8_repair to the table at index table (an
 * absolute index). */
void rt_lua_value_open(lua_State *L, int table);

/* 1 when the n bytes at s hold no NUL and no byte over 127 (text that
 * needs no UTF-8 check), else 0; eight bytes at a time. Exported (the
 * binary links with ENABLE_EXPORTS) for LuaJIT's FFI: chorus.engine.limits
 * checks a step's long output strings with it (a Lua pattern search cost
 * ~50 instructions a byte). */
int chorus_text_plain(const char *s, size_t n);

#endif
