/* rt_lua_json.c - a fast path for encoding JSON, byte for byte what
 * lua-cjson 2.1.0 (configured as lua/chorus/json.lua does) writes for the
 * values it covers, and nil for any other, which then goes to cjson.
 *
 *   native.json_encode(v) -> string | nil
 *   native.chat_chunk(text) -> true, content, finish_reason, model | false
 *     a streamed chat completion chunk's fields read from its text
 *     (rt_chat_chunk.h: each nil unless a string there; false when the
 *     text must be decoded whole)
 *
 * Why: cjson formats every number with snprintf("%.14g") (~0.3 us an
 * integer, ~0.6 us a float here) and appends strings a byte at a time; an
 * execution record (API reads, events, rows written) holds dozens of
 * numbers and kilobytes of text. Here integers are written directly and
 * runs of plain bytes copied at once.
 *
 * Covered: nil, booleans, json.null (the NULL light userdata), finite
 * numbers, strings, tables whose keys are all strings (objects) or exactly
 * 1..n (arrays), nested up to RT_JSON_FAST_DEPTH. Left to cjson: an empty
 * table with a metatable (chorus.json marks empty arrays so), any other
 * key, arrays with holes (cjson writes null for them or makes them
 * objects), NaN and infinities, deeper nesting, functions and userdata
 * (cjson's errors). Metatables are otherwise ignored, as cjson does. */
#include "rt_lua_json.h"

#include "rt_buf.h"
#include "rt_bytescan.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below chorus.json's MAX_DEPTH (128): what is deeper is cjson's to
 * refuse with its own message. */
#define RT_JSON_FAST_DEPTH 100
/* The buffer is kept between calls; one grown past this is freed after
 * the call that needed it. */
#define RT_JSON_KEEP_BYTES (256 * 1024)

typedef struct {
    char *p;
    size_t len, cap;
} jbuf_t;

static _Thread_local jbuf_t rt__jb;

/* rt_lua_json_encode_buf's stand-in for one member of the top object. */
typedef struct {
    const char *key, *val;
    size_t klen, vlen;
} jover_t;

static _Thread_local jover_t rt__over;

enum { J_OK = 0, J_BAIL = 1, J_NOMEM = 2 };

/* l_json_encode works on a copy of the thread's buffer; every growth
 * is written back at once, because a Lua error (out of memory, in
 * lua_checkstack or lua_pushlstring) can longjmp out of an encode: the
 * thread's buffer must then be the grown block, not the one realloc
 * freed. Inline: called for nearly every piece written, and the room is
 * nearly always there. */
static inline int jb_reserve(jbuf_t *b, size_t n)
{
    size_t cap = b->cap;
    if (rt_buf_reserve(&b->p, b->len, &b->cap, n) != 0)
        return J_NOMEM;
    if (b->cap != cap) {
        rt__jb.p = b->p;
        rt__jb.cap = b->cap;
    }
    return J_OK;
}

static inline int jb_put(jbuf_t *b, const char *s, size_t n)
{
    if (jb_reserve(b, n) != J_OK)
        return J_NOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return J_OK;
}

static inline int jb_char(jbuf_t *b, char c)
{
    if (jb_reserve(b, 1) != J_OK)
        return J_NOMEM;
    b->p[b->len++] = c;
    return J_OK;
}

/* cjson 2.1.0's escapes: control bytes, '"', '\\', '/' and DEL; bytes of
 * 0x80 and above go as they are. */
static const char *const rt__esc[128] = {
    "\\u0000",     "\\u0001",    "\\u0002",     "\\u0003",
    "\\u0004",     "\\u0005",    "\\u0006",     "\\u0007",
    "\\b",         "\\t",        "\\n",         "\\u000b",
    "\\f",         "\\r",        "\\u000e",     "\\u000f",
    "\\u0010",     "\\u0011",    "\\u0012",     "\\u0013",
    "\\u0014",     "\\u0015",    "\\u0016",     "\\u0017",
    "\\u0018",     "\\u0019",    "\\u001a",     "\\u001b",
    "\\u001c",     "\\u001d",    "\\u001e",     "\\u001f",
    [34] = "\\\"", [47] = "\\/", [92] = "\\\\", [127] = "\\u007f",
};

static int jb_string(jbuf_t *b, const char *s, size_t n)
{
    size_t i = 0, run;
    /* The worst case: every byte escaped as \u00XX, plus the quotes. */
    if (n > ((size_t)-1) / 8 || jb_reserve(b, n * 6 + 2) != J_OK)
        return J_NOMEM;
    b->p[b->len++] = '"';
    while (i < n) {
        run = i;
        /* Whole words of plain bytes first (rt_bytescan.h). */
        while (run + 8 <= n) {
            uint64_t w = rt_bs_load(s + run);
            if (rt_bs_below(w, 0x20) | rt_bs_eq(w, '"') | rt_bs_eq(w, '/') |
                rt_bs_eq(w, '\\') | rt_bs_eq(w, 0x7f))
                break;
            run += 8;
        }
        while (run < n && ((unsigned char)s[run] >= 128 ||
                           rt__esc[(unsigned char)s[run]] == NULL))
            run++;
        memcpy(b->p + b->len, s + i, run - i);
        b->len += run - i;
        if (run < n) {
            const char *e = rt__esc[(unsigned char)s[run]];
            size_t el = strlen(e);
            memcpy(b->p + b->len, e, el);
            b->len += el;
            run++;
        }
        i = run;
    }
    b->p[b->len++] = '"';
    return J_OK;
}

/* "%.14g" as cjson writes numbers: integers below 1e14 directly (the same
 * digits), others through snprintf. */
static int jb_number(jbuf_t *b, double x)
{
    char tmp[32];
    int n;
    if (!isfinite(x))
        return J_BAIL;
    if (x == floor(x) && fabs(x) < 1e14 && !(x == 0 && signbit(x))) {
        long long v = (long long)x;
        unsigned long long u = v < 0 ? 0ull - (unsigned long long)v
                                     : (unsigned long long)v;
        char *e = tmp + sizeof(tmp), *p = e;
        do {
            *--p = (char)('0' + u % 10);
            u /= 10;
        } while (u != 0);
        if (v < 0)
            *--p = '-';
        return jb_put(b, p, (size_t)(e - p));
    }
    n = snprintf(tmp, sizeof(tmp), "%.14g", x);
    if (n <= 0 || (size_t)n >= sizeof(tmp) || memchr(tmp, ',', (size_t)n))
        return J_BAIL; /* a locale's decimal comma: cjson's to fix */
    return jb_put(b, tmp, (size_t)n);
}

static int jb_value(jbuf_t *b, lua_State *L, int idx, int depth);

/* An array: keys exactly 1..n (n = #t, checked by counting the keys). */
static int jb_array(jbuf_t *b, lua_State *L, int idx, int depth, long n)
{
    long i, count = 0;
    int rc;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        double k;
        lua_pop(L, 1);
        k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (k < 1 || k > (double)n || k != floor(k)) {
            lua_pop(L, 1);
            return J_BAIL; /* a hole or another key: cjson's */
        }
        count++;
    }
    if (count != n)
        return J_BAIL;
    if ((rc = jb_char(b, '[')) != J_OK)
        return rc;
    for (i = 1; i <= n; i++) {
        if (i > 1 && (rc = jb_char(b, ',')) != J_OK)
            return rc;
        lua_rawgeti(L, idx, (int)i);
        rc = jb_value(b, L, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (rc != J_OK)
            return rc;
    }
    return jb_char(b, ']');
}

/* An object in one pass: every key must be a string (any other sends
 * the whole value to cjson). */
static int jb_object(jbuf_t *b, lua_State *L, int idx, int depth)
{
    int rc, first = 1;
    if ((rc = jb_char(b, '{')) != J_OK)
        return rc;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t kl;
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return J_BAIL;
        }
        k = lua_tolstring(L, -2, &kl);
        if ((!first && (rc = jb_char(b, ',')) != J_OK) ||
            (rc = jb_string(b, k, kl)) != J_OK ||
            (rc = jb_char(b, ':')) != J_OK ||
            (rc = depth == 1 && rt__over.key != NULL && kl == rt__over.klen &&
                          memcmp(k, rt__over.key, kl) == 0
                      ? jb_string(b, rt__over.val, rt__over.vlen)
                      : jb_value(b, L, lua_gettop(L), depth + 1)) != J_OK) {
            lua_pop(L, 2);
            return rc;
        }
        first = 0;
        lua_pop(L, 1);
    }
    if (first) {
        /* An empty table: {} for cjson, but chorus.json marks empty
         * arrays with a metatable: those are its own to write. */
        if (lua_getmetatable(L, idx)) {
            lua_pop(L, 1);
            return J_BAIL;
        }
    }
    return jb_char(b, '}');
}

static int jb_table(jbuf_t *b, lua_State *L, int idx, int depth)
{
    long n;
    if (depth > RT_JSON_FAST_DEPTH || !lua_checkstack(L, 4))
        return J_BAIL;
    n = (long)lua_objlen(L, idx);
    if (n > 0)
        return jb_array(b, L, idx, depth, n);
    return jb_object(b, L, idx, depth);
}

/* Tests in the order values come in records (strings, tables, nulls,
 * numbers), and no jump table (-fno-jump-tables for this file, see
 * CMakeLists.txt): a switch's mispredicted about every other value, half
 * the indirect-branch misses of a GET status (callgrind). */
static int jb_value(jbuf_t *b, lua_State *L, int idx, int depth)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return jb_string(b, s, n);
    }
    if (t == LUA_TTABLE)
        return jb_table(b, L, idx, depth);
    if (t == LUA_TLIGHTUSERDATA)
        return lua_touserdata(L, idx) == NULL ? jb_put(b, "null", 4) : J_BAIL;
    if (t == LUA_TNUMBER)
        return jb_number(b, lua_tonumber(L, idx));
    if (t == LUA_TBOOLEAN)
        return lua_toboolean(L, idx) ? jb_put(b, "true", 4)
                                     : jb_put(b, "false", 5);
    if (t == LUA_TNIL)
        return jb_put(b, "null", 4);
    return J_BAIL;
}

const char *rt_lua_json_encode_buf(lua_State *L, int idx, const char *key,
                                   const char *val, size_t vlen, size_t *len)
{
    jbuf_t b = rt__jb;
    int rc;
    b.len = 0;
    rt__over.key = key;
    rt__over.klen = key != NULL ? strlen(key) : 0;
    rt__over.val = val;
    rt__over.vlen = vlen;
    rc = jb_value(&b, L, idx, 1);
    rt__over.key = NULL;
    rt__jb.len = 0;
    if (rc != J_OK)
        return NULL;
    *len = b.len;
    return b.p;
}

void rt_lua_json_trim(void)
{
    if (rt__jb.cap > RT_JSON_KEEP_BYTES) {
        free(rt__jb.p);
        rt__jb.p = NULL;
        rt__jb.cap = 0;
    }
}

static int l_json_encode(lua_State *L)
{
    /* Worked on as a local, not through the thread-local at every append
     * (see jb_reserve for its growth). */
    jbuf_t b = rt__jb;
    int rc;
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    rt__over.key = NULL; /* in case an encode_buf was left by an error */
    b.len = 0;
    rc = jb_value(&b, L, 1, 1);
    if (rc == J_OK)
        lua_pushlstring(L, b.p, b.len);
    else
        lua_pushnil(L);
    if (b.cap > RT_JSON_KEEP_BYTES) {
        free(b.p);
        b.p = NULL;
        b.cap = 0;
    }
    b.len = 0;
    rt__jb = b;
    return 1;
}

/* An escaped span is unescaped into the encoder's buffer, which is free
 * between calls; one grown past RT_JSON_KEEP_BYTES is let go after. */
void rt_lua_json_push_span(lua_State *L, const rt_json_span_t *sp)
{
    jbuf_t b = rt__jb;
    size_t n;
    if (!sp->present) {
        lua_pushnil(L);
        return;
    }
    if (!sp->escaped) {
        lua_pushlstring(L, sp->p, sp->n);
        return;
    }
    b.len = 0;
    if (jb_reserve(&b, sp->n) != J_OK)
        luaL_error(L, "out of memory");
    n = rt_json_unescape(sp, b.p);
    /* The push may raise (out of memory): the block is the thread's
     * buffer until it has returned. */
    lua_pushlstring(L, b.p, n);
    if (rt__jb.cap > RT_JSON_KEEP_BYTES) {
        free(rt__jb.p);
        rt__jb.p = NULL;
        rt__jb.cap = 0;
    }
}

static int l_chat_chunk(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    rt_chat_chunk_t c;
    if (!rt_chat_chunk_read(s, n, &c)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    rt_lua_json_push_span(L, &c.content);
    rt_lua_json_push_span(L, &c.finish);
    rt_lua_json_push_span(L, &c.model);
    return 4;
}

static const luaL_Reg funcs[] = {
    {"json_encode", l_json_encode},
    {"chat_chunk", l_chat_chunk},
    {NULL, NULL},
};

void rt_lua_json_open(lua_State *L, int table)
{
    lua_pushvalue(L, table);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
