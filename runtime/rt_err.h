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

/* The list. Where a word needs more:
 *   TIMEOUT       a time limit passed: the operation's own, the task's
 *                 deadline or its deadline scope's
 *   CANCELLED     the waiting task was cancelled
 *   CLOSED        the connection, stream, socket or handle is closed, or
 *                 was lost while the operation waited
 *   DISCONNECTED  not connected right now (reconnecting): nothing was sent
 *   BUSY          another task already waits on this object, or it is in
 *                 use
 *   INVAL         bad arguments or options (a NUL byte in SQL, a header
 *                 with CR); caller bugs that are types raise instead
 *   CONNECT       a connection could not be made for another reason than
 *                 REFUSED or RESOLVE (the server refused the handshake: a
 *                 bad password)
 *   CONNECTION    the connection broke while in use (reset, truncated)
 *   EMPTY_REPLY   the server closed the connection without answering
 *   TOO_LARGE     beyond a size limit: a body, headers, a line of input
 *   BLOCKED       the host resolved to an address the SSRF guard refuses
 *   FAILED        a request failed for a reason not listed here (the
 *                 detail says which)
 *   BACKPRESSURE  the peer does not read: the send queue is full
 *   ANSWERED      the HTTP request was already answered
 *   EXITED        the child process has exited
 *   EOF           the input ended
 *   NESTED        a deadline scope is already open on the task
 *   CONNECTED     not a failure: redis_next's watch says the connection is
 *                 back (its loss is DISCONNECTED); listed so that every
 *                 word a wait ends with comes from here */
#define RT_ERR_MAP(X)                                                          \
    X(TIMEOUT, "timeout")                                                      \
    X(CANCELLED, "cancelled")                                                  \
    X(CLOSED, "closed")                                                        \
    X(DISCONNECTED, "disconnected")                                            \
    X(BUSY, "busy")                                                            \
    X(NOMEM, "out of memory")                                                  \
    X(INVAL, "invalid request")                                                \
    X(REFUSED, "connection refused")                                           \
    X(CONNECT, "connect failed")                                               \
    X(RESOLVE, "cannot resolve")                                               \
    X(TLS, "tls error")                                                        \
    X(CONNECTION, "connection error")                                          \
    X(EMPTY_REPLY, "empty reply")                                              \
    X(TOO_LARGE, "too large")                                                  \
    X(BLOCKED, "blocked address")                                              \
    X(BAD_URL, "bad url")                                                      \
    X(PROTOCOL, "unsupported protocol")                                        \
    X(REDIRECTS, "too many redirects")                                         \
    X(FAILED, "request failed")                                                \
    X(BACKPRESSURE, "backpressure")                                            \
    X(ANSWERED, "answered")                                                    \
    X(NOT_WEBSOCKET, "not a websocket request")                                \
    X(EXITED, "exited")                                                        \
    X(EOF, "eof")                                                              \
    X(NESTED, "nested")                                                        \
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
