/* rt_lua_value.c - checks of the values agents and clients hand the
 * engine, before they reach a record: their size as JSON, their nesting,
 * that they are JSON at all, and whether any string would be refused by
 * the stores (NUL, malformed UTF-8).
 *
 * native.value_check(v, max_bytes, max_depth [, seen]) -> bytes, bad_strings
 *     | nil, kind, message
 *   bytes: about what v takes as JSON (each occurrence of a table shared
 *   by reference counted again, as an encoder would write it); the walk
 *   stops as soon as max_bytes is passed, so its cost is bounded by
 *   max_bytes however v was built. bad_strings: strings (keys too) with
 *   a NUL byte or malformed UTF-8. kind: "too_large" | "too_deep" |
 *   "not_json"; message names the path ("items[3].name", 0-based).
 *   seen: a table (weak keys) of tables checked before, to their size
 *   and nesting: met anywhere in v, they count without being walked
 *   again (a step's output that carries its dependencies' outputs costs
 *   its own part only); v goes in when it is a table of 4 KB or more as
 *   JSON that needed no repair. A table changed after it was checked
 *   keeps its old figures.
 * native.utf8_repair(s) -> s with NUL and malformed bytes as U+FFFD (s
 *   itself when nothing needed repair). */
#include "rt_lua_value.h"

#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "rt_bytescan.h"
#include "rt_utf8.h"

/* json.null is lua-cjson's light userdata NULL. */
#define RT_VALUE_MAX_DEPTH 1000

typedef struct {
    double bytes, max_bytes;
    int max_depth, bad, kind, top;
    int seen;         /* stack index of the seen table, 0: none */
    const char *what; /* for not_json: the type */
    /* Last: only the fields above are cleared before a walk. */
    int key_at[RT_VALUE_MAX_DEPTH + 1]; /* stack index of each level's key */
} vc_t;

enum { VC_OK, VC_TOO_LARGE, VC_TOO_DEEP, VC_NOT_JSON };

static int vc_string(vc_t *c, lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    c->bytes += (double)len + 2;
    if (rt_utf8_check_text((const unsigned char *)s, len) != len)
        c->bad++;
    return VC_OK;
}

/* seen[t] packs a checked table's size and nesting height. */
#define VC_HEIGHT 1024.0
/* Only values this large go into seen: a smaller one costs less to walk
 * again than to remember (an insert in a weak table the collector clears,
 * a look-up per nested table while seen is not empty), and a walk that
 * meets no remembered table stays under this size plus its own part. */
#define RT_VALUE_SEEN_MIN_BYTES 4096.0

/* vc_walk: *height is the nesting below idx (0 for a scalar, 1 for a
 * table of scalars...). */
static int vc_walk(vc_t *c, lua_State *L, int idx, int depth, int *height)
{
    int t = lua_type(L, idx), rc, h, sub;
    *height = 0;
    switch (t) {
    case LUA_TNIL:
        c->bytes += 4;
        break;
    case LUA_TBOOLEAN:
        c->bytes += 5;
        break;
    case LUA_TNUMBER: {
        double x = lua_tonumber(L, idx);
        if (!isfinite(x)) {
            c->what = "a non-finite number";
            return VC_NOT_JSON;
        }
        c->bytes += (x == floor(x) && fabs(x) < 1e15)
                        ? (fabs(x) < 10 ? 1 : floor(log10(fabs(x))) + 1) +
                              (x < 0)
                        : 24;
        break;
    }
    case LUA_TSTRING:
        vc_string(c, L, idx);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL) {
            c->what = "a light userdata";
            return VC_NOT_JSON;
        }
        c->bytes += 4; /* json.null */
        break;
    case LUA_TTABLE:
        if (depth >= c->max_depth)
            return VC_TOO_DEEP;
        if (!lua_checkstack(L, 3)) {
            c->what = "a structure too deep for the stack";
            return VC_NOT_JSON;
        }
        if (c->seen) {
            lua_pushvalue(L, idx);
            lua_rawget(L, c->seen);
            if (lua_type(L, -1) == LUA_TNUMBER) {
                double p = lua_tonumber(L, -1);
                double hh = fmod(p, VC_HEIGHT);
                lua_pop(L, 1);
                /* Too deep here: walked, for the error's path. */
                if (depth + (int)hh <= c->max_depth) {
                    c->bytes += (p - hh) / VC_HEIGHT;
                    *height = (int)hh;
                    break;
                }
            } else {
                lua_pop(L, 1);
            }
        }
        h = 0;
        c->bytes += 2;
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            int kt = lua_type(L, -2);
            c->key_at[depth] = lua_gettop(L) - 1;
            c->top = depth + 1;
            if (kt == LUA_TSTRING) {
                vc_string(c, L, -2);
                c->bytes += 2; /* ':' and ',' */
            } else if (kt == LUA_TNUMBER && isfinite(lua_tonumber(L, -2))) {
                c->bytes += 1;
            } else if (kt == LUA_TNUMBER) {
                c->what = "a key that is not a finite number";
                c->top = depth;
                lua_pop(L, 2);
                return VC_NOT_JSON;
            } else {
                c->what = "a key that is not a string or a number";
                c->top = depth; /* the key itself is what is wrong */
                lua_pop(L, 2);
                return VC_NOT_JSON;
            }
            if (c->bytes > c->max_bytes) {
                lua_pop(L, 2);
                return VC_TOO_LARGE;
            }
            rc = vc_walk(c, L, lua_gettop(L), depth + 1, &sub);
            if (rc != VC_OK)
                return rc; /* the stack keeps the path */
            if (sub > h)
                h = sub;
            lua_pop(L, 1);
        }
        c->top = depth;
        *height = h + 1;
        break;
    default:
        c->what = lua_typename(L, t);
        return VC_NOT_JSON;
    }
    return c->bytes > c->max_bytes ? VC_TOO_LARGE : VC_OK;
}

/* Pushes the path of the value being walked ("a.b[2]"), from the keys
 * still on the stack; a long one keeps its first and last segments. */
static void vc_push_path(vc_t *c, lua_State *L)
{
    luaL_Buffer b;
    int i;
    luaL_buffinit(L, &b);
    for (i = 0; i < c->top; i++) {
        if (c->top > 12 && i == 3) {
            luaL_addstring(&b, "...");
            i = c->top - 8;
        }
        int k = c->key_at[i];
        if (lua_type(L, k) == LUA_TNUMBER) {
            char num[32];
            snprintf(num, sizeof num, "[%.0f]", lua_tonumber(L, k) - 1);
            luaL_addstring(&b, num);
        } else {
            size_t len;
            const char *s = lua_tolstring(L, k, &len);
            if (i > 0)
                luaL_addchar(&b, '.');
            luaL_addlstring(&b, s, len > 64 ? 64 : len);
        }
    }
    luaL_pushresult(&b);
}

int chorus_text_plain(const char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = rt_bs_load(s + i);
        if (rt_bs_zero(w) | (w & RT_BS_HIGHS))
            return 0;
    }
    for (; i < n; i++)
        if (s[i] == '\0' || (unsigned char)s[i] > 127)
            return 0;
    return 1;
}

static int l_value_check(lua_State *L)
{
    /* On the C stack (~4 KB: the key stack): a check is often made on
     * every step's output, a malloc and a clear of it each time cost more
     * than a small walk. Only the header is cleared. */
    vc_t cs, *c = &cs;
    int rc, base, height;
    double max_bytes = luaL_checknumber(L, 2);
    int max_depth = (int)luaL_checkinteger(L, 3);
    if (max_depth < 1 || max_depth > RT_VALUE_MAX_DEPTH)
        return luaL_error(L, "value_check: max_depth must be 1..%d",
                          RT_VALUE_MAX_DEPTH);
    memset(c, 0, offsetof(vc_t, key_at));
    c->max_bytes = max_bytes;
    c->max_depth = max_depth;
    /* An empty seen table is no table: nothing to look up per table. */
    if (lua_istable(L, 4)) {
        lua_pushnil(L);
        if (lua_next(L, 4) != 0) {
            lua_pop(L, 2);
            c->seen = 4;
        }
    }
    lua_settop(L, 4);
    base = lua_gettop(L);
    rc = vc_walk(c, L, 1, 0, &height);
    if (rc == VC_OK) {
        lua_settop(L, base);
        if (lua_istable(L, 4) && c->bad == 0 && lua_istable(L, 1) &&
            c->bytes >= RT_VALUE_SEEN_MIN_BYTES) {
            lua_pushvalue(L, 1);
            lua_pushnumber(L, c->bytes * VC_HEIGHT + height);
            lua_rawset(L, 4);
        }
        lua_pushnumber(L, c->bytes);
        lua_pushinteger(L, c->bad);
        return 2;
    }
    vc_push_path(c, L);
    {
        const char *path = lua_tostring(L, -1);
        const char *at = path[0] ? path : "(root)";
        lua_pushnil(L);
        switch (rc) {
        case VC_TOO_LARGE:
            lua_pushliteral(L, "too_large");
            lua_pushfstring(
                L, "larger than %d bytes as JSON",
                (int)(max_bytes > 2147483647.0 ? 2147483647.0 : max_bytes));
            break;
        case VC_TOO_DEEP:
            lua_pushliteral(L, "too_deep");
            lua_pushfstring(L, "nested deeper than %d levels (at %s)",
                            max_depth, at);
            break;
        default:
            lua_pushliteral(L, "not_json");
            lua_pushfstring(L, "holds %s, which JSON cannot carry (at %s)",
                            c->what ? c->what : "an unknown value", at);
            break;
        }
    }
    return 3;
}

static int l_utf8_repair(lua_State *L)
{
    size_t len, n;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char *out;
    if (rt_utf8_check_text((const unsigned char *)s, len) == len) {
        lua_settop(L, 1);
        return 1;
    }
    out = malloc(rt_utf8_repair_size(len));
    if (out == NULL)
        return luaL_error(L, "out of memory");
    n = rt_utf8_repair((const unsigned char *)s, len, out);
    lua_pushlstring(L, (const char *)out, n);
    free(out);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"value_check", l_value_check},
    {"utf8_repair", l_utf8_repair},
    {NULL, NULL},
};

void rt_lua_value_open(lua_State *L, int table)
{
    lua_pushvalue(L, table);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
