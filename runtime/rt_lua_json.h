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

/* Encodes the value at idx (an absolute index) into a buffer of the
 * thread's, as native.json_encode would, except that the top object's
 * member key (when key is not NULL) is written as the string val. Returns
 * the text, valid until the next encode or rt_lua_json_trim, and its
 * length in *len; NULL when the fast path does not cover the value (or
 * out of memory): cjson's then. Never makes a Lua string of it (LuaJIT
 * interns every string, and look-alike texts of one length are compared
 * byte by byte while alive). */
const char *rt_lua_json_encode_buf(lua_State *L, int idx, const char *key,
                                   const char *val, size_t vlen, size_t *len);

/* Lets go of the buffer when one value grew it past what is kept. */
void rt_lua_json_trim(void);

/* Adds json_encode and chat_chunk to the table at index table (an absolute index). */
void rt_lua_json_open(lua_State *L, int table);

#endif
