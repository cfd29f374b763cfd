/* rt_lua_netaddr.c - address checks for Lua (rt_netaddr.h):
 *   native.is_internal_address(s) -> true | false | nil (not an address)
 *   native.address_in(s, cidr) -> boolean (false when either is bad)
 *   native.is_cidr(s) -> boolean: an address or a CIDR range */
#include "rt_lua_netaddr.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <string.h>

#include "rt_netaddr.h"

/* Parses a literal IPv4 or IPv6 address into ss; 0 or -1. */
static int rt__literal(const char *s, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, s, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
        ss->ss_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
        ss->ss_family = AF_INET6;
        return 0;
    }
    return -1;
}

static int l_is_internal_address(lua_State *L)
{
    struct sockaddr_storage ss;
    if (rt__literal(luaL_checkstring(L, 1), &ss) != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushboolean(L, rt_netaddr_is_internal((struct sockaddr *)&ss));
    return 1;
}

static int l_address_in(lua_State *L)
{
    struct sockaddr_storage ss;
    rt_cidr_t c;
    const char *ip = luaL_checkstring(L, 1), *cidr = luaL_checkstring(L, 2);
    lua_pushboolean(L, rt__literal(ip, &ss) == 0 &&
                           rt_cidr_parse(cidr, &c) == 0 &&
                           rt_cidr_contains(&c, (struct sockaddr *)&ss));
    return 1;
}

static int l_is_cidr(lua_State *L)
{
    rt_cidr_t c;
    lua_pushboolean(L, rt_cidr_parse(luaL_checkstring(L, 1), &c) == 0);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"is_internal_address", l_is_internal_address},
    {"address_in", l_address_in},
    {"is_cidr", l_is_cidr},
    {NULL, NULL},
};

void rt_lua_netaddr_open(lua_State *L, int table)
{
    lua_pushvalue(L, table);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
