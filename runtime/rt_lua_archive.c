/* rt_lua_archive.c - native.archive(capacity) -> archive | nil, err.
 *
 *   ar:put(id, trace_id, status, config, config_id, user_id, tenant_id,
 *          created_at, record [, tokens, cost, session_id])
 *          -> true | nil, "out of memory"
 *          (the oldest record goes when capacity are held)
 *   ar:get(id_or_trace) -> record, status, id, trace_id, config,
 *          config_id, user_id, tenant_id, created_at, session_id | nil
 *   ar:select(status, config, user_id, tenant_id, max [, since, until,
 *          config_id, session_id])
 *          -> total, ids, created, tokens, cost: the records matching every
 *          non-nil filter (config: name or id; config_id: the id only;
 *          created_at in [since, until)), newest first; ids and created_at
 *          of the first max, and the tokens and cost of all that match
 *   ar:count(), ar:bytes()
 * record is any string (the memory store's serialized record). Strings
 * other than id and trace_id may be nil; a wrong type raises (a bug of
 * the caller). */
#include "rt_lua_archive.h"

#include <lauxlib.h>
#include <math.h>

#include "rt_archive.h"
#include "rt_err.h"
#include "rt_lua_util.h"

#define ARCHIVE "chorus.archive"

typedef struct {
    rt_archive_t *ar;
} archive_ud_t;

static rt_archive_t *rt__check(lua_State *L)
{
    archive_ud_t *u = luaL_checkudata(L, 1, ARCHIVE);
    return u->ar;
}

static int l_gc(lua_State *L)
{
    archive_ud_t *u = luaL_checkudata(L, 1, ARCHIVE);
    rt_archive_free(u->ar);
    u->ar = NULL;
    return 0;
}

/* An optional string argument: s NULL when nil. */
static rt_str_t rt__opt_str(lua_State *L, int i)
{
    rt_str_t v = {NULL, 0};
    if (!lua_isnoneornil(L, i)) {
        luaL_checktype(L, i, LUA_TSTRING);
        v.s = lua_tolstring(L, i, &v.len);
    }
    return v;
}

static void rt__push_str(lua_State *L, const rt_str_t *s)
{
    if (s->s != NULL)
        lua_pushlstring(L, s->s, s->len);
    else
        lua_pushnil(L);
}

static int l_put(lua_State *L)
{
    rt_archive_t *ar = rt__check(L);
    rt_str_t f[RT_AR_NFIELDS];
    size_t len;
    const char *rec;
    double created;
    luaL_checktype(L, 2, LUA_TSTRING);
    luaL_checktype(L, 3, LUA_TSTRING);
    f[RT_AR_ID] = rt__opt_str(L, 2);
    f[RT_AR_TRACE] = rt__opt_str(L, 3);
    f[RT_AR_STATUS] = rt__opt_str(L, 4);
    f[RT_AR_CONFIG] = rt__opt_str(L, 5);
    f[RT_AR_CONFIG_ID] = rt__opt_str(L, 6);
    f[RT_AR_USER] = rt__opt_str(L, 7);
    f[RT_AR_TENANT] = rt__opt_str(L, 8);
    f[RT_AR_SESSION] = rt__opt_str(L, 13);
    created = luaL_checknumber(L, 9);
    rec = luaL_checklstring(L, 10, &len);
    if (rt_archive_put(ar, f, created, luaL_optnumber(L, 11, 0),
                       luaL_optnumber(L, 12, 0), rec, len) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rt_err_word(RT_ENOMEM));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_get(lua_State *L)
{
    rt_archive_t *ar = rt__check(L);
    size_t len;
    const char *key = luaL_checklstring(L, 2, &len);
    const rt_archive_entry_t *e = rt_archive_get(ar, key, len);
    int f;
    if (e == NULL) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, e->record.s, e->record.len);
    rt__push_str(L, &e->field[RT_AR_STATUS]);
    rt__push_str(L, &e->field[RT_AR_ID]);
    rt__push_str(L, &e->field[RT_AR_TRACE]);
    for (f = RT_AR_CONFIG; f <= RT_AR_TENANT; f++)
        rt__push_str(L, &e->field[f]);
    lua_pushnumber(L, e->created_at);
    rt__push_str(L, &e->field[RT_AR_SESSION]);
    return 10;
}

static int l_select(lua_State *L)
{
    rt_archive_t *ar = rt__check(L);
    rt_archive_filter_t f;
    lua_Integer max;
    size_t n, total, i;
    double sums[2];
    const rt_archive_entry_t **out;
    f.status = rt__opt_str(L, 2);
    f.config = rt__opt_str(L, 3);
    f.user = rt__opt_str(L, 4);
    f.tenant = rt__opt_str(L, 5);
    max = luaL_checkinteger(L, 6);
    f.since = luaL_optnumber(L, 7, -HUGE_VAL);
    f.until = luaL_optnumber(L, 8, HUGE_VAL);
    f.config_id = rt__opt_str(L, 9);
    f.session = rt__opt_str(L, 10);
    if (max < 0)
        return luaL_argerror(L, 6, "must be >= 0");
    n = (size_t)max < rt_archive_count(ar) ? (size_t)max : rt_archive_count(ar);
    /* A userdata as scratch space: the collector frees it if a push
     * below raises. */
    out = lua_newuserdata(L, (n > 0 ? n : 1) * sizeof(*out));
    total = rt_archive_select(ar, &f, out, n, sums);
    if (total == (size_t)-1) {
        lua_pushnil(L);
        lua_pushstring(L, rt_err_word(RT_ENOMEM));
        return 2;
    }
    if (n > total)
        n = total;
    lua_pushnumber(L, (lua_Number)total);
    lua_createtable(L, (int)n, 0);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        rt__push_str(L, &out[i]->field[RT_AR_ID]);
        lua_rawseti(L, -3, (int)i + 1);
        lua_pushnumber(L, out[i]->created_at);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_pushnumber(L, sums[0]);
    lua_pushnumber(L, sums[1]);
    return 5;
}

static int l_count(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)rt_archive_count(rt__check(L)));
    return 1;
}

static int l_bytes(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)rt_archive_bytes(rt__check(L)));
    return 1;
}

static int l_new(lua_State *L)
{
    lua_Integer cap = luaL_checkinteger(L, 1);
    archive_ud_t *u;
    if (cap < 0 || cap > ((lua_Integer)1 << 28))
        return luaL_argerror(L, 1, "must be 0..268435456");
    u = lua_newuserdata(L, sizeof(*u));
    u->ar = NULL;
    luaL_getmetatable(L, ARCHIVE);
    lua_setmetatable(L, -2);
    u->ar = rt_archive_new((size_t)cap);
    if (u->ar == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, rt_err_word(RT_ENOMEM));
        return 2;
    }
    return 1;
}

void rt_lua_archive_open(lua_State *L, int table)
{
    static const luaL_Reg methods[] = {
        {"put", l_put},     {"get", l_get},     {"select", l_select},
        {"count", l_count}, {"bytes", l_bytes}, {NULL, NULL},
    };
    rt_lua_new_class(L, ARCHIVE, methods, NULL, l_gc);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, table, "archive");
}
