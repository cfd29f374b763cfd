/* rt_redis.h - asynchronous Redis connections on a libuv loop (hiredis).
 *
 * This is the engine half of the Redis binding: it knows nothing of Lua.
 * One rt_redis_t is one logical connection to one server: a hiredis async
 * context driven by our own uv_poll adapter (hiredis 0.14's libuv adapter
 * ignores poll errors, so a refused connection was never reported), with a
 * connect timeout and a per-command timeout on uv timers (0.14 has
 * neither), and, when asked, reconnection with capped exponential backoff
 * after the connection fails or is lost.
 *
 * A connection is either a command connection (rt_redis_command; hiredis
 * queues commands, so many callers may have commands in flight at once and
 * replies come back in order) or a subscriber (rt_redis_subscribe and
 * rt_redis_unsubscribe; messages are copied into a bounded queue that drops
 * its oldest message when full). A subscriber remembers its channels and
 * patterns and subscribes to them again after every reconnection.
 *
 * Callbacks are only ever called from the loop, never from inside the
 * function that started the work. When a function that takes a callback
 * returns an error, the callback will never be called. Every callback may
 * call rt_redis_close on the connection it is about.
 *
 * hiredis writes with write(2): the process must ignore SIGPIPE (main.c
 * does). hiredis 0.14 has no TLS. */
#ifndef RT_REDIS_H
#define RT_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rt_err.h"

typedef struct rt_redis rt_redis_t;
/* A pending request: a command waiting for its reply, or a subscription
 * waiting for its confirmations. Valid until its callback starts or it is
 * aborted. */
typedef struct rt_redis_cmd rt_redis_cmd_t;

/* Errors (negative; 0 is success). */
/* Errors are codes of rt_err.h (negative; 0 is success): RT_ENOMEM,
 * RT_EINVAL (bad options or a command refused here), RT_EDISCONNECTED
 * (not connected right now: reconnecting), RT_ECLOSED (rt_redis_close was
 * called, or the connection closed while a reply was awaited),
 * RT_ETIMEOUT; and why an attempt failed or a connection was lost
 * (rt_redis_last_code): RT_EREFUSED, RT_ERESOLVE, RT_ETIMEOUT,
 * RT_ECONNECT (any other reason, the server refusing AUTH included),
 * RT_ECONNECTION, RT_ECLOSED (the server closed it), RT_ENOMEM. */

typedef enum {
    RT_REDIS_CONNECTING = 0, /* resolving, connecting or handshaking */
    RT_REDIS_CONNECTED,      /* ready: commands are accepted */
    RT_REDIS_DISCONNECTED,   /* waiting before the next attempt (or for
                                nothing, without reconnect) */
    RT_REDIS_CLOSED          /* rt_redis_close was called */
} rt_redis_state_t;

typedef enum {
    /* The connection became ready (after the handshake and, for a
     * subscriber, once its channels and patterns are subscribed again). */
    RT_REDIS_EV_CONNECTED = 0,
    /* An attempt failed or the connection was lost; rt_redis_last_error
     * says why. A new attempt follows when reconnect is on. */
    RT_REDIS_EV_DISCONNECTED,
    /* A subscriber queued a message (see rt_redis_peek). */
    RT_REDIS_EV_MESSAGE
} rt_redis_event_t;

typedef void (*rt_redis_event_cb)(rt_redis_t *r, rt_redis_event_t ev,
                                  void *data);

/* A command's reply, or a subscription's confirmation, or a failure.
 * On success err is 0 and reply is the reply (a Redis error reply is a
 * reply: type REDIS_REPLY_ERROR); for a subscription reply is NULL. On
 * failure reply is NULL and err is RT_ECLOSED (the connection closed or
 * was lost before the reply came) or RT_ETIMEOUT (command_timeout_ms
 * passed; a late reply is discarded). reply is freed when the callback
 * returns. */
typedef void (*rt_redis_reply_cb)(rt_redis_cmd_t *cmd, const redisReply *reply,
                                  int err, void *data);

/* Where and how to connect. Strings need to live only during rt_redis_new:
 * the engine copies them. */
typedef struct {
    const char *host;     /* name or address (resolved with uv_getaddrinfo,
                             so the loop never blocks on DNS) */
    int port;             /* TCP port; 0: 6379 */
    const char *path;     /* unix socket path instead of host, or NULL */
    int db;               /* SELECT db after connecting (not subscribers) */
    const char *user;     /* AUTH user (Redis 6 ACL), or NULL */
    const char *password; /* AUTH password, or NULL: no AUTH */
    uint64_t connect_timeout_ms; /* per attempt, handshake included; 0: none */
    uint64_t command_timeout_ms; /* per command; 0: none */
    int reconnect;               /* try again after a failure or a loss */
    uint64_t backoff_min_ms;     /* first delay; 0: 100 */
    uint64_t backoff_max_ms;     /* cap of the doubling delay; 0: 5000 */
    int subscriber;              /* a pub/sub connection */
    size_t max_queue;            /* subscriber: messages kept; 0: 10000 */
} rt_redis_opts_t;

/* A received message. The strings point into the same allocation and are
 * NUL-terminated after their length (they may contain NULs). */
typedef struct rt_redis_msg {
    struct rt_redis_msg *next;
    const char *channel;
    size_t channel_len;
    const char *payload;
    size_t payload_len;
    const char *pattern; /* the matching pattern (PSUBSCRIBE), or NULL */
    size_t pattern_len;
} rt_redis_msg_t;

typedef struct {
    uint64_t connects;   /* times the connection became ready */
    uint64_t reconnects; /* the same, not counting the first time */
    uint64_t errors;     /* failed attempts and lost connections */
    uint64_t timeouts;   /* commands that timed out */
    uint64_t messages;   /* messages received (subscriber) */
    uint64_t drops;      /* messages dropped: the queue was full */
    size_t pending;      /* commands waiting for their reply */
    size_t queued;       /* messages waiting in the queue */
    size_t channels;     /* channels subscribed (remembered) */
    size_t patterns;     /* patterns subscribed (remembered) */
} rt_redis_stats_t;

/* Creates a connection and starts connecting from the loop. The result of
 * the first attempt arrives as an event. On failure returns NULL and sets
 * *err (RT_ENOMEM, or RT_EINVAL when neither host nor path is
 * given); cb is then never called. */
rt_redis_t *rt_redis_new(uv_loop_t *loop, const rt_redis_opts_t *o,
                         rt_redis_event_cb cb, void *data, int *err);

/* Closes the connection. Before it returns, the callback of every pending
 * request is called with err "closed"; after it returns no callback or
 * event is ever called again. Queued messages are freed. Memory is freed
 * by the loop's close callbacks, so run the loop before uv_loop_close.
 * May be called from any callback of this connection. Idempotent. */
void rt_redis_close(rt_redis_t *r);

/* Sends a command (argv[0] is its name; arguments are binary safe). On
 * success returns 0, sets *out (if out is not NULL) and cb is called once
 * with the reply, "closed" or "timeout", unless the command is aborted or
 * the connection closed first (then cb is called with "closed" by
 * rt_redis_close). Errors: RT_EDISCONNECTED (not connected now),
 * RT_ECLOSED, RT_ENOMEM, RT_EINVAL (argc < 1, a
 * subscriber, or a command that would change the connection's mode or
 * state behind hiredis' back: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, MONITOR,
 * SELECT, HELLO, RESET, CLIENT REPLY). */
int rt_redis_command(rt_redis_t *r, int argc, const char **argv,
                     const size_t *argvlen, rt_redis_reply_cb cb, void *data,
                     rt_redis_cmd_t **out);

/* Abandons a pending request: its callback will never be called. A command
 * still goes to the server and its reply is discarded when it comes. */
void rt_redis_cmd_abort(rt_redis_cmd_t *cmd);

/* Subscriber: subscribes to n channels (pattern 0) or patterns (pattern
 * 1). The names are remembered (subscribed again after a reconnection)
 * whatever the result. Returns 0 when connected: cb is called once every
 * name is confirmed by the server (reply NULL, err NULL) or with "closed".
 * Returns RT_EDISCONNECTED when not connected now: the names will be
 * subscribed when the connection is back. Other errors: RT_ECLOSED,
 * RT_ENOMEM, RT_EINVAL (n < 1, or not a subscriber). */
int rt_redis_subscribe(rt_redis_t *r, int pattern, int n, const char **names,
                       const size_t *lens, rt_redis_reply_cb cb, void *data,
                       rt_redis_cmd_t **out);

/* Subscriber: forgets n channels or patterns and unsubscribes from them
 * (without waiting for the confirmations). From then on, no new message
 * for them is queued. Returns 0, RT_ECLOSED, RT_ENOMEM or
 * RT_EINVAL. */
int rt_redis_unsubscribe(rt_redis_t *r, int pattern, int n, const char **names,
                         const size_t *lens);

/* Subscriber: the oldest queued message, or NULL. rt_redis_shift frees it
 * and moves to the next. */
const rt_redis_msg_t *rt_redis_peek(const rt_redis_t *r);
void rt_redis_shift(rt_redis_t *r);

rt_redis_state_t rt_redis_state(const rt_redis_t *r);
/* Why the last attempt failed or the connection was lost: the word of
 * rt_redis_last_code, then what hiredis, libuv or the server said when it
 * adds to it ("connection refused", "closed: Server closed the
 * connection", "connect failed: WRONGPASS ...", "timeout"), or "" if
 * nothing failed yet. Valid until the next event. */
const char *rt_redis_last_error(const rt_redis_t *r);
/* The code (rt_err.h) of rt_redis_last_error, 0 if nothing failed yet. */
int rt_redis_last_code(const rt_redis_t *r);
void rt_redis_stats(const rt_redis_t *r, rt_redis_stats_t *out);

#endif
