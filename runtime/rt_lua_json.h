/* rt_lua_json.h - the fast path of chorus.json's encoder
 * (native.json_encode: a string, or nil for cjson to handle), and the
 * fields of a streamed chat completion chunk read from its text
 * (native.chat_chunk, rt_chat_chunk.h). */
#ifndef RT_LUA_JSON_H
#define RT_LUA_JSON_H

#include <lua.h>

#include "rt_chat_chunk.h"

/* Pushes a span's value as a string (nil when it is absent), unescaped
 * through a buffer kept between calls. Raises on out of memory. */
void rt_lua_json_push_span(lua_State *L, const rt_json_span_t *span);

/* Adds json_encode and chat_chunk to the table at index table (an absolute index). */
void rt_lua_json_open(lua_State *L, int table);

#endif
