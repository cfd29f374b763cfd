/* rt_err.h - every failure an engine or a binding reports: one list.
 *
 * In the manner of libuv's UV_ERRNO_MAP: each X(NAME, "word") below gives
 * a code, RT_E<NAME> (negative; 0 is success), and the word Lua code sees
 * (`nil, "timeout"`). Engines return and report these codes; the Lua
 * faces push the word (rt_lua_push_err), so the same failure reads the
 * same from every binding: a query, a command, a request, a receive or a
 * sleep that ran out of time all end with nil, "timeout". A message that
 * says more is "word: detail" (rt_err_detail). The words are part of the
 * scripting API (specs and scripts compare them): change one only with
 * them, and add new failures here, never as a literal in a binding. */
#ifndef RT_ERR_H
#define RT_ERR_H

#include <stddef.h>

#define RT_ERR_MAP(X)                                                          \
    /* A time limit passed: the operation's own, the task's deadline or    \
     * its deadline scope's. */                                             \
    X(TIMEOUT, "timeout")                                                   \
    /* The waiting task was cancelled. */                                   \
    X(CANCELLED, "cancelled")                                               \
    /* The connection, stream, socket or handle is closed, or was lost     \
     * while the operation waited. */                                       \
    X(CLOSED, "closed")                                                     \
    /* Not connected right now (reconnecting): nothing was sent. */         \
    X(DISCONNECTED, "disconnected")                                         \
    /* Another task already waits on this object, or it is in use. */       \
    X(BUSY, "busy")                                                         \
    X(NOMEM, "out of memory")                                               \
    /* Bad arguments or options (a NUL byte in SQL, a header with CR).     \
     * Caller bugs that are types raise instead. */                         \
    X(INVAL, "invalid request")                                             \
    X(REFUSED, "connection refused")                                        \
    /* A connection could not be made for another reason (the server      \
     * refused the handshake: a bad password). */                          \
    X(CONNECT, "connect failed")                                            \
    /* A host name could not be resolved to an address. */                  \
    X(RESOLVE, "cannot resolve")                                            \
    X(TLS, "tls error")                                                     \
    /* The connection broke while in use (reset, truncated). */             \
    X(CONNECTION, "connection error")                                       \
    /* The server closed the connection without answering. */               \
    X(EMPTY_REPLY, "empty reply")                                           \
    /* Beyond a size limit: a body, headers, a line of input. */            \
    X(TOO_LARGE, "too large")                                               \
    /* The host resolved to an address the SSRF guard refuses. */           \
    X(BLOCKED, "blocked address")                                           \
    X(BAD_URL, "bad url")                                                   \
    X(PROTOCOL, "unsupported protocol")                                     \
    X(REDIRECTS, "too many redirects")                                      \
    /* A request failed for a reason not listed here (the detail says). */  \
    X(FAILED, "request failed")                                             \
    /* The peer does not read: the send queue is full. */                   \
    X(BACKPRESSURE, "backpressure")                                         \
    /* The HTTP request was already answered. */                            \
    X(ANSWERED, "answered")                                                 \
    X(NOT_WEBSOCKET, "not a websocket request")                             \
    /* The child process has exited. */                                     \
    X(EXITED, "exited")                                                     \
    /* The input ended. */                                                  \
    X(EOF, "eof")                                                           \
    /* A deadline scope is already open on the task. */                     \
    X(NESTED, "nested")                                                     \
    /* Not a failure: redis_next's watch says the connection is back (its  \
     * loss is DISCONNECTED). Listed so that every word a wait ends with   \
     * comes from here. */                                                  \
    X(CONNECTED, "connected")

/* Positions in the list, 0-based. */
enum {
#define RT__ERR_INDEX(name, word) RT__ERR_I_##name,
    RT_ERR_MAP(RT__ERR_INDEX)
#undef RT__ERR_INDEX
        RT_ERR_COUNT
};

/* The codes: RT_E<NAME> = -1 - position. */
enum {
#define RT__ERR_CODE(name, word) RT_E##name = -1 - RT__ERR_I_##name,
    RT_ERR_MAP(RT__ERR_CODE)
#undef RT__ERR_CODE
};

/* The word of code, or "unknown error" for anything not in the list. */
const char *rt_err_word(int code);

/* The position of code in the list (0 .. RT_ERR_COUNT - 1), or -1. */
static inline int rt_err_index(int code)
{
    return code < 0 && code >= -RT_ERR_COUNT ? -1 - code : -1;
}

/* What detail adds to the word of code: detail, or NULL when it is NULL,
 * empty or the word itself in other letters (hiredis' "Connection
 * refused"). A message is "word: detail", or the word alone. */
const char *rt_err_detail(int code, const char *detail);

#endif
