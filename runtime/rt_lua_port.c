/* rt_lua_port.c - native.reserve_port(host, port) -> reservation, port.
 *
 * The supervisor of `chorus serve --workers N` binds the port itself
 * (SO_REUSEPORT, never listening) before it starts any worker. That turns
 * "address in use" into one clear error at start instead of workers that
 * die and are restarted forever, and it lets port 0 mean "a free port"
 * shared by all workers. A bound socket that does not listen receives no
 * connections: Linux spreads them over the listening sockets only. */
#include "rt_lua_port.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>

#include "rt_err.h"
#include "rt_lua_util.h"

#define RESERVATION "chorus.port_reservation"

typedef struct {
    int fd;
} reservation_t;

static int l_close(lua_State *L)
{
    reservation_t *r = luaL_checkudata(L, 1, RESERVATION);
    if (r->fd >= 0) {
        /* Nothing to recover from a failed close of an idle socket. */
        (void)close(r->fd);
        r->fd = -1;
    }
    return 0;
}

/* Binds a fresh socket of res's family; returns the fd or -1 with errno. */
static int rt__bind(const struct addrinfo *res)
{
    int one = 1, fd, saved;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        saved = errno;
        (void)close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int l_reserve_port(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    struct addrinfo hints, *res = NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    reservation_t *r;
    char service[16];
    int rc, fd;

    if (port < 0 || port > 65535)
        return luaL_argerror(L, 2, "must be 0..65535");
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", (int)port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0 || res == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s %s: %s", rt_err_word(RT_ERESOLVE), host,
                        rc != 0 ? gai_strerror(rc) : "no address");
        if (res)
            freeaddrinfo(res);
        return 2;
    }
    fd = rt__bind(res);
    freeaddrinfo(res);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        int e = errno;
        if (fd >= 0)
            (void)close(fd);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot listen on %s:%d: %s", host, (int)port,
                        e == EADDRINUSE ? "address already in use"
                                        : strerror(e));
        return 2;
    }
    r = lua_newuserdata(L, sizeof(*r));
    r->fd = fd;
    luaL_getmetatable(L, RESERVATION);
    lua_setmetatable(L, -2);
    lua_pushinteger(L, ss.ss_family == AF_INET6
                           ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                           : ntohs(((struct sockaddr_in *)&ss)->sin_port));
    return 2;
}

void rt_lua_port_open(lua_State *L, int table)
{
    static const luaL_Reg methods[] = {{"close", l_close}, {NULL, NULL}};
    rt_lua_new_class(L, RESERVATION, methods, NULL, l_close);
    lua_pushcfunction(L, l_reserve_port);
    lua_setfield(L, table, "reserve_port");
}
