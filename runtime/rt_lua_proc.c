/* rt_lua_proc.c - child processes through libuv (uv_spawn): start one with
 * an argv (no shell: nothing to quote), signal it, and wait for its exit
 * from a task.
 *
 *   native.spawn_process(argv, opts) -> proc | nil, err
 *     argv: {"file", "arg1", ...}; file is looked up in PATH when it has
 *     no slash. opts (all optional):
 *       env = {NAME = "value" | false}: set or remove variables of the
 *             inherited environment; clear_env = true: inherit nothing
 *       cwd = "dir"
 *       stdin, stdout, stderr = "inherit" (default) | "null"
 *     err says which program could not be run and why ("no such file or
 *     directory", "permission denied"): libuv reports a failed exec here,
 *     not as an exit.
 *   native.exepath() -> the running binary's absolute path | nil, err
 *   proc:pid() -> number
 *   proc:kill([sig]) -> true | nil, err    sig: "SIGTERM" (default),
 *     "TERM" or a number; nil, "exited" once the child has exited (its pid
 *     may belong to another process by then).
 *   proc:wait() -> code, signal | nil, reason
 *     Suspends the task until the child exits. code is its exit status;
 *     killed by a signal, code is 128 + the signal's number and signal its
 *     name ("SIGKILL"). Returns at once when it has exited already. reason:
 *     "cancelled" or "timeout" (the waiting task's), "busy" (another task
 *     waits on it).
 *
 * Lifetimes. libuv reaps the child (SIGCHLD on the loop) and then calls
 * exit_cb, where the handle is closed. While the child runs, the registry
 * anchors the userdata, so a process nobody holds is still reaped (a
 * collected handle would stop libuv watching it and leave a zombie). The
 * handle is unreferenced except while a task waits on it: a child alone
 * does not keep the loop alive, a waiting task does. A child still
 * running when the Lua state closes is left running (its handle closed). */
#include "rt_lua_proc.h"

#include <lauxlib.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_home.h"
#include "rt_lua_util.h"
#include "rt_lua_wait.h"

#define RT_PROC_MT "chorus.process"

extern char **environ;

typedef struct {
    uv_process_t h;     /* h.data = this */
    rt_lua_wait_t wait; /* a task in wait() */
    rt_lua_sched_t *ls;
    int self_ref; /* anchors the userdata until exit, or NOREF */
    int pid;
    int64_t status;       /* exit status, once exited */
    int signal;           /* terminating signal, 0 = none */
    unsigned exited : 1;  /* exit_cb ran */
    unsigned closing : 1; /* uv_close called */
    unsigned closed : 1;  /* the close callback ran */
    unsigned orphan : 1;  /* the userdata is gone: close_cb frees */
} rt_proc_t;

static const struct {
    const char *name;
    int num;
} rt__signals[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT},
    {"SIGILL", SIGILL},   {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
    {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},   {"SIGKILL", SIGKILL},
    {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
    {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
    {"SIGTSTP", SIGTSTP}, {"SIGXCPU", SIGXCPU}, {NULL, 0}};

static rt_lua_sched_t *proc_ctx(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static rt_proc_t *proc_check(lua_State *L)
{
    rt_proc_t **ud = luaL_checkudata(L, 1, RT_PROC_MT);
    if (*ud == NULL)
        luaL_error(L, "process object already finalized");
    return *ud;
}

/* Pushes `code, signal` for an exited child; returns 2. */
static int proc_push_status(lua_State *L, const rt_proc_t *p);

static int proc_build_status(lua_State *L, void *arg)
{
    return proc_push_status(L, arg);
}

static int proc_push_status(lua_State *L, const rt_proc_t *p)
{
    int i;
    if (p->signal == 0) {
        lua_pushnumber(L, (lua_Number)p->status);
        lua_pushnil(L);
        return 2;
    }
    lua_pushnumber(L, 128 + p->signal);
    for (i = 0; rt__signals[i].name; i++)
        if (rt__signals[i].num == p->signal)
            break;
    if (rt__signals[i].name)
        lua_pushstring(L, rt__signals[i].name);
    else
        lua_pushfstring(L, "SIG%d", p->signal);
    return 2;
}

static void proc_close_cb(uv_handle_t *h)
{
    rt_proc_t *p = h->data;
    p->closed = 1;
    if (p->orphan)
        free(p);
}

static void proc_exit_cb(uv_process_t *h, int64_t status, int sig)
{
    rt_proc_t *p = h->data;
    p->exited = 1;
    p->status = status;
    p->signal = sig;
    p->closing = 1;
    uv_close((uv_handle_t *)h, proc_close_cb);
    if (rt_lua_wait_active(&p->wait))
        rt_lua_wait_done(&p->wait, proc_build_status, p);
    /* Last: this may let the userdata be collected. */
    if (p->self_ref != LUA_NOREF) {
        int ref = p->self_ref;
        p->self_ref = LUA_NOREF;
        luaL_unref(p->ls->L, LUA_REGISTRYINDEX, ref);
    }
}

static void proc_wait_cancel(rt_lua_wait_t *w, int why)
{
    rt_proc_t *p = (rt_proc_t *)((char *)w - offsetof(rt_proc_t, wait));
    (void)why;
    if (!p->closing)
        uv_unref((uv_handle_t *)&p->h);
}

/* The wait lives in the process object. */
static const rt_lua_wait_vt_t proc_wait_vt = {proc_wait_cancel, NULL, NULL};

/* Signal number from a name ("SIGTERM", "TERM") or a number at idx. */
static int proc_signal_arg(lua_State *L, int idx)
{
    const char *name;
    int i;
    if (lua_isnoneornil(L, idx))
        return SIGTERM;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, idx);
        if (n < 0 || n > 64 || n != (int)n)
            luaL_argerror(L, idx, "not a signal number");
        return (int)n;
    }
    name = luaL_checkstring(L, idx);
    for (i = 0; rt__signals[i].name; i++)
        if (strcmp(rt__signals[i].name, name) == 0 ||
            strcmp(rt__signals[i].name + 3, name) == 0)
            return rt__signals[i].num;
    luaL_argerror(L, idx, "unknown signal name");
    return 0;
}

static int m_pid(lua_State *L)
{
    lua_pushinteger(L, proc_check(L)->pid);
    return 1;
}

static int m_kill(lua_State *L)
{
    rt_proc_t *p = proc_check(L);
    int sig = proc_signal_arg(L, 2), rc;
    if (p->exited || p->closing)
        return rt_lua_fail(L, p->ls, RT_EEXITED);
    rc = uv_process_kill(&p->h, sig);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, uv_strerror(rc));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int m_wait(lua_State *L)
{
    rt_proc_t *p = proc_check(L);
    rt_lua_task_t *cur;
    if (p->exited)
        return proc_push_status(L, p);
    cur = rt_lua_current(L, p->ls, "process:wait");
    if (rt_lua_wait_active(&p->wait))
        return rt_lua_fail(L, p->ls, RT_EBUSY);
    uv_ref((uv_handle_t *)&p->h); /* a waiting task keeps the loop alive */
    return rt_lua_wait_suspend(L, &p->wait, cur, -1);
}

/* Only when the child has exited (or the state is closing: the registry
 * anchors a running child's userdata). A running child is left running. */
static int m_gc(lua_State *L)
{
    rt_proc_t **ud = luaL_checkudata(L, 1, RT_PROC_MT);
    rt_proc_t *p = *ud;
    if (p == NULL)
        return 0;
    *ud = NULL;
    p->orphan = 1;
    if (p->closed) {
        free(p);
    } else if (!p->closing) {
        p->closing = 1;
        uv_close((uv_handle_t *)&p->h, proc_close_cb);
    }
    return 0;
}

/* A string without NUL bytes from the value at idx (exec cannot pass
 * them), or raises naming what (an argv or env entry). */
static const char *proc_cstring(lua_State *L, int idx, const char *what)
{
    size_t len;
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "spawn_process: %s must be a string", what);
    s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len)
        luaL_error(L, "spawn_process: %s contains a NUL byte", what);
    return s;
}

/* args: the argv table at index 1 as a NULL-terminated array in a new
 * userdata (pushed). Its strings stay anchored by the table. */
static char **proc_argv(lua_State *L)
{
    size_t n = lua_objlen(L, 1), i;
    char **args;
    if (n == 0)
        luaL_argerror(L, 1, "argv must name the program to run");
    args = lua_newuserdata(L, (n + 1) * sizeof(*args));
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        args[i] = (char *)proc_cstring(L, -1, "each argv entry");
        lua_pop(L, 1);
    }
    args[n] = NULL;
    return args;
}

/* The child's environment: NULL (inherit as is) when opts has neither env
 * nor clear_env; else a NULL-terminated array. Pushes one value either
 * way: what anchors the array and the NAME=value strings made here until
 * the caller returns. opts is at index 2, may be nil. */
static char **proc_env(lua_State *L)
{
    int clear = 0, env_idx, anchor, n = 0, k = 0;
    size_t cap;
    char **envp, **e;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "clear_env");
        clear = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, 2, "env");
    } else {
        lua_pushnil(L);
    }
    env_idx = lua_gettop(L);
    if (!clear && lua_isnil(L, env_idx))
        return NULL; /* the nil pushed is the one value */
    if (!lua_isnil(L, env_idx) && !lua_istable(L, env_idx))
        luaL_error(L, "spawn_process: opts.env must be a table");
    if (!clear)
        for (e = environ; *e != NULL; e++)
            n++;
    if (!lua_isnil(L, env_idx)) {
        lua_pushnil(L);
        while (lua_next(L, env_idx)) {
            lua_pop(L, 1);
            k++;
        }
    }
    cap = (size_t)n + (size_t)k + 1;
    lua_newtable(L);
    anchor = lua_gettop(L);
    envp = lua_newuserdata(L, cap * sizeof(*envp));
    lua_rawseti(L, anchor, 1);
    n = 0;
    /* Inherited variables, unless the table sets or removes them. */
    if (!clear) {
        for (e = environ; *e != NULL; e++) {
            const char *eq = strchr(*e, '=');
            if (eq != NULL && !lua_isnil(L, env_idx)) {
                lua_pushlstring(L, *e, (size_t)(eq - *e));
                lua_rawget(L, env_idx);
                if (!lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    continue;
                }
                lua_pop(L, 1);
            }
            envp[n++] = *e;
        }
    }
    if (!lua_isnil(L, env_idx)) {
        lua_pushnil(L);
        while (lua_next(L, env_idx)) {
            const char *name = proc_cstring(L, -2, "each env name"), *value;
            if (*name == '\0' || strchr(name, '=') != NULL)
                luaL_error(L,
                           "spawn_process: env name '%s' is not a "
                           "variable name",
                           name);
            if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
                lua_pop(L, 1); /* false: removed */
                continue;
            }
            value = proc_cstring(L, -1, "each env value");
            lua_pushfstring(L, "%s=%s", name, value);
            envp[n++] = (char *)lua_tostring(L, -1);
            lua_rawseti(L, anchor, n + 1); /* anchored until we return */
            lua_pop(L, 1);
        }
    }
    envp[n] = NULL;
    lua_remove(L, env_idx); /* leaves anchor on top */
    return envp;
}

/* How fd (0, 1, 2) of the child is set up from opts[field]. */
static void proc_stdio(lua_State *L, uv_stdio_container_t *c, int fd,
                       const char *field)
{
    const char *mode = "inherit";
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, field);
        if (!lua_isnil(L, -1))
            mode = proc_cstring(L, -1, field);
        lua_pop(L, 1);
    }
    if (strcmp(mode, "inherit") == 0) {
        c->flags = UV_INHERIT_FD;
        c->data.fd = fd;
    } else if (strcmp(mode, "null") == 0) {
        c->flags = UV_IGNORE; /* libuv opens /dev/null for 0-2 */
    } else {
        luaL_error(L,
                   "spawn_process: opts.%s must be \"inherit\" or "
                   "\"null\", got \"%s\"",
                   field, mode);
    }
}

static int l_spawn_process(lua_State *L)
{
    rt_lua_sched_t *ls = proc_ctx(L);
    uv_process_options_t o;
    uv_stdio_container_t stdio[3];
    rt_proc_t *p, **ud;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    memset(&o, 0, sizeof(o));
    o.args = proc_argv(L); /* pushes 1 */
    o.file = o.args[0];
    o.env = proc_env(L); /* pushes 1 */
    proc_stdio(L, &stdio[0], 0, "stdin");
    proc_stdio(L, &stdio[1], 1, "stdout");
    proc_stdio(L, &stdio[2], 2, "stderr");
    o.stdio = stdio;
    o.stdio_count = 3;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "cwd");
        if (!lua_isnil(L, -1))
            o.cwd = proc_cstring(L, -1, "opts.cwd"); /* anchored by opts */
        lua_pop(L, 1);
    }
    o.exit_cb = proc_exit_cb;

    /* The userdata first: nothing below raises once the child runs. */
    ud = lua_newuserdata(L, sizeof(*ud));
    *ud = NULL;
    luaL_getmetatable(L, RT_PROC_MT);
    lua_setmetatable(L, -2);
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return luaL_error(L, "out of memory");
    p->ls = ls;
    rt_lua_wait_init(&p->wait, &proc_wait_vt);
    p->self_ref = LUA_NOREF;
    p->h.data = p;
    /* uv_spawn returns once the child has exec'd, or with exec's error. */
    rc = uv_spawn(ls->sched.loop, &p->h, &o);
    if (rc < 0) {
        /* The handle was initialised: close it even so (libuv). */
        p->orphan = 1;
        p->closing = 1;
        uv_close((uv_handle_t *)&p->h, proc_close_cb);
        lua_pushnil(L);
        if (o.cwd != NULL)
            lua_pushfstring(L, "cannot run '%s' in %s: %s", o.file, o.cwd,
                            uv_strerror(rc));
        else
            lua_pushfstring(L, "cannot run '%s': %s", o.file, uv_strerror(rc));
        return 2;
    }
    *ud = p;
    p->pid = p->h.pid;
    uv_unref((uv_handle_t *)&p->h);
    lua_pushvalue(L, -1);
    p->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static int l_exepath(lua_State *L)
{
    char *exe = rt_home_exe();
    if (exe == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "cannot read the executable's path");
        return 2;
    }
    lua_pushstring(L, exe);
    free(exe);
    return 1;
}

void rt_lua_proc_open(lua_State *L, rt_lua_sched_t *ls, int table)
{
    static const luaL_Reg methods[] = {
        {"pid", m_pid},
        {"kill", m_kill},
        {"wait", m_wait},
        {NULL, NULL},
    };
    rt_lua_new_class(L, RT_PROC_MT, methods, NULL, m_gc);
    lua_pushlightuserdata(L, ls);
    lua_pushcclosure(L, l_spawn_process, 1);
    lua_setfield(L, table, "spawn_process");
    lua_pushcfunction(L, l_exepath);
    lua_setfield(L, table, "exepath");
}
