/* rt_lua_util.c - small non-yielding natives: clocks, hashes, ids, tty. */
#include "rt_lua_util.h"

#include "rt_utf8.h"

#include <lauxlib.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

/* native.now() -> monotonic milliseconds (fractional), for latencies. */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6);
    return 1;
}

double chorus_clock_now_ms(void)
{
    return (double)uv_hrtime() / 1e6;
}

double chorus_clock_time_s(void)
{
    struct timeval tv;
    if (gettimeofday(&tv, NULL) != 0)
        return 0; /* cannot fail with a valid pointer (EFAULT only) */
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* native.time() -> wall-clock seconds since the epoch (fractional). */
static int l_time(lua_State *L)
{
    struct timeval tv;
    if (gettimeofday(&tv, NULL) != 0)
        return luaL_error(L, "gettimeofday failed");
    lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
    return 1;
}

static void rt__hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

/* SHA-256's implementation fetched once and one context reused (per
 * thread): EVP_Digest looks the algorithm up in OpenSSL's providers and
 * makes a context on every call, most of the cost of hashing the few
 * bytes of an API key or a traceparent, done on every request. */
static _Thread_local EVP_MD *rt__sha256_md;
static _Thread_local EVP_MD_CTX *rt__sha256_ctx;

static int rt__sha256(const char *s, size_t len, unsigned char *md,
                      unsigned int *mdlen)
{
    if (rt__sha256_ctx == NULL) {
        EVP_MD *m = EVP_MD_fetch(NULL, "SHA256", NULL);
        EVP_MD_CTX *c = m != NULL ? EVP_MD_CTX_new() : NULL;
        if (c == NULL) { /* no cache: the one-shot way */
            EVP_MD_free(m);
            return EVP_Digest(s, len, md, mdlen, EVP_sha256(), NULL) == 1 ? 0
                                                                          : -1;
        }
        rt__sha256_md = m;
        rt__sha256_ctx = c;
    }
    if (EVP_DigestInit_ex(rt__sha256_ctx, rt__sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(rt__sha256_ctx, s, len) != 1 ||
        EVP_DigestFinal_ex(rt__sha256_ctx, md, mdlen) != 1)
        return -1;
    return 0;
}

/* native.sha256(s) -> lowercase hex digest */
static int l_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE];
    if (rt__sha256(s, len, md, &mdlen) != 0)
        return luaL_error(L, "sha256 failed");
    rt__hex(md, mdlen, hex);
    lua_pushlstring(L, hex, 2 * (size_t)mdlen);
    return 1;
}

/* Random bytes for ids come from a pool refilled 4 KiB at a time: OpenSSL 3
 * pays a getpid() syscall per RAND_bytes call (fork detection), which was
 * a sixth of an in-memory execution's cost when called per id. A forked
 * child must never reuse its parent's pool, so fork empties it. */
#define RT_RAND_POOL 4096
static unsigned char rt__pool[RT_RAND_POOL];
static size_t rt__pool_pos = RT_RAND_POOL;

static void rt__pool_forget(void)
{
    rt__pool_pos = RT_RAND_POOL;
}

/* Copies n random bytes to out. Returns 0, or -1 if OpenSSL failed. */
static int rt__random(unsigned char *out, size_t n)
{
    if (rt__pool_pos + n > RT_RAND_POOL) {
        if (RAND_bytes(rt__pool, RT_RAND_POOL) != 1)
            return -1;
        rt__pool_pos = 0;
    }
    memcpy(out, rt__pool + rt__pool_pos, n);
    /* Used bytes are wiped so they cannot leak through a later dump. */
    memset(rt__pool + rt__pool_pos, 0, n);
    rt__pool_pos += n;
    return 0;
}

/* native.uuid() -> a random (version 4) UUID string */
static int l_uuid(lua_State *L)
{
    unsigned char b[16];
    char hex[32], out[36];
    int i, j = 0;
    if (rt__random(b, sizeof(b)) != 0)
        return luaL_error(L, "RAND_bytes failed");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    rt__hex(b, sizeof(b), hex);
    for (i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[j++] = '-';
        out[j++] = hex[i];
    }
    lua_pushlstring(L, out, sizeof(out));
    return 1;
}

/* native.isatty(fd) -> boolean */
static int l_isatty(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    lua_pushboolean(L, isatty(fd));
    return 1;
}

static int l_hostname(lua_State *L)
{
    char buf[256];
    size_t len = sizeof(buf);
    if (uv_os_gethostname(buf, &len) != 0)
        lua_pushliteral(L, "unknown");
    else
        lua_pushlstring(L, buf, len);
    return 1;
}

static int l_pid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)uv_os_getpid());
    return 1;
}

/* native.rss() -> resident set size in bytes (for benchmarks and metrics) */
static int l_rss(lua_State *L)
{
    size_t rss = 0;
    if (uv_resident_set_memory(&rss) != 0)
        return 0;
    lua_pushnumber(L, (lua_Number)rss);
    return 1;
}

/* native.list_dir(path) -> {{name = n, type = "file"|"dir"|"other"}...}
 * | nil, err. Synchronous: used for small script directories only. */
static int l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    uv_fs_t req;
    uv_dirent_t ent;
    int rc, i = 0;
    rc = uv_fs_scandir(NULL, &req, path, 0, NULL);
    if (rc < 0) {
        uv_fs_req_cleanup(&req);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, uv_strerror(rc));
        return 2;
    }
    lua_createtable(L, rc, 0);
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, ent.name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, ent.type == UV_DIRENT_FILE  ? "file"
                          : ent.type == UV_DIRENT_DIR ? "dir"
                                                      : "other");
        lua_setfield(L, -2, "type");
        lua_rawseti(L, -2, ++i);
    }
    uv_fs_req_cleanup(&req);
    return 1;
}

/* native.utf8_valid(s) -> true | false, byte offset (0-based) of the first
 * invalid byte. JSON bodies are checked with it: lua-cjson passes invalid
 * UTF-8 through untouched. */
static int l_utf8_valid(lua_State *L)
{
    size_t len, bad;
    const char *s = luaL_checklstring(L, 1, &len);
    bad = rt_utf8_check((const unsigned char *)s, len);
    if (bad == len) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushnumber(L, (lua_Number)bad);
    return 2;
}

/* native.hmac_sha256(key, data) -> lowercase hex digest (webhook
 * signatures). */
static int l_hmac_sha256(lua_State *L)
{
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *data = luaL_checklstring(L, 2, &dlen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE];
    if (klen > INT_MAX ||
        HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, dlen,
             md, &mdlen) == NULL)
        return luaL_error(L, "hmac_sha256 failed");
    rt__hex(md, mdlen, hex);
    lua_pushlstring(L, hex, 2 * (size_t)mdlen);
    return 1;
}

/* native.random_hex(n) -> n random bytes as 2n hex digits (API keys). */
static int l_random_hex(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char b[64];
    char hex[128];
    if (n < 1 || n > 64)
        return luaL_argerror(L, 1, "must be 1..64");
    if (rt__random(b, (size_t)n) != 0)
        return luaL_error(L, "RAND_bytes failed");
    rt__hex(b, (size_t)n, hex);
    lua_pushlstring(L, hex, 2 * (size_t)n);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"utf8_valid", l_utf8_valid},
    {"hmac_sha256", l_hmac_sha256},
    {"random_hex", l_random_hex},
    {"list_dir", l_list_dir},
    {"now", l_now},
    {"time", l_time},
    {"sha256", l_sha256},
    {"uuid", l_uuid},
    {"isatty", l_isatty},
    {"hostname", l_hostname},
    {"pid", l_pid},
    {"rss", l_rss},
    {NULL, NULL},
};

void rt_lua_util_open(lua_State *L, int table)
{
    static int atfork_done;
    if (!atfork_done) {
        /* Without the handler a child could hand out its parent's ids;
         * refuse to run rather than risk that. */
        if (pthread_atfork(NULL, NULL, rt__pool_forget) != 0)
            luaL_error(L, "pthread_atfork failed");
        atfork_done = 1;
    }
    lua_pushvalue(L, table);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

void rt_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      void *up, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    if (up != NULL)
        lua_pushlightuserdata(L, up);
    luaL_setfuncs(L, methods, up != NULL ? 1 : 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
