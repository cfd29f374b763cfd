/* rt_curl.c - outbound HTTP requests on a libuv loop (libcurl multi).
 *
 * The multi socket API: curl tells us which sockets to watch (sock_cb: a
 * uv_poll per socket, remembered with curl_multi_assign) and when to call
 * it back (timer_cb: one uv_timer). Poll and timer events are handed to
 * curl_multi_socket_action, and every call is followed by reading the
 * finished transfers (check_info). curl is never re-entered from its own
 * callbacks: a 0 ms timeout only arms the uv_timer.
 *
 * Streamed responses (rt_curl_open): curl's header and write callbacks
 * only record what came (the final head, body bytes, the end) and put the
 * request on a notify list; check_info delivers those events after
 * socket_action has returned, one per call, so the caller may consume,
 * unpause (curl_easy_pause is not allowed inside curl's callbacks) or
 * release from them. A reader that lags makes write_cb return
 * CURL_WRITEFUNC_PAUSE; curl keeps those bytes and offers them again when
 * rt_curl_consume unpauses, possibly inside curl_easy_pause itself, which
 * is why the kick timer delivers what that queued. */
#include "rt_curl.h"
#include "rt_buf.h"

#include <curl/curl.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Connections kept for reuse (curl counts those in use too: below the
 * number of requests in flight to one service, every transfer that ends
 * closes one and the next opens another: with 100 in flight and 64 here,
 * half the requests paid a TCP handshake). curl's default (4 per added
 * handle) shrinks to nothing as transfers finish, so it is fixed here;
 * idle ones are closed after curl's CURLOPT_MAXAGE_CONN (118 s) or when
 * the server drops them. */
#define RT_CURL_MAX_IDLE 1024
/* Easy handles kept between requests (see struct rt_curl). A node with
 * N requests in flight ends and starts about N in one loop turn, so the
 * pool grows to what the traffic needs (up to RT_CURL_IDLE_EASY_MAX;
 * with a fixed 64, 100 requests in flight paid a new handle on every
 * other request), and handles no request took for RT_CURL_IDLE_TRIM_MS
 * are freed down to RT_CURL_IDLE_EASY_KEEP: each is a few KB plus its
 * transfer buffers. */
#define RT_CURL_IDLE_EASY_MAX 1024
#define RT_CURL_IDLE_EASY_KEEP 16
#define RT_CURL_IDLE_TRIM_MS 10000
/* Limit on the response header block: curl bounds each header line but
 * not their number. */
#define RT_CURL_MAX_HEADER_BYTES (256 * 1024)
/* Redirects followed when follow_redirects is on and no limit is given. */
#define RT_CURL_DEFAULT_REDIRECTS 5

typedef struct rt_curl_sock rt_curl_sock_t;

struct rt_curl {
    uv_loop_t *loop;
    CURLM *multi;          /* owns the connection pool */
    uv_timer_t timer;      /* curl's timeout */
    uv_timer_t kick;       /* delivers stream events queued outside
                            * socket_action (see rt_curl_consume) */
    int open_handles;      /* timers not closed; the struct goes at 0 */
    rt_curl_req_t *reqs;   /* requests in flight (list) */
    rt_curl_req_t *ended;  /* streamed requests ended, not released */
    rt_curl_req_t *notify; /* streamed requests with events to deliver */
    rt_curl_sock_t *socks; /* polled sockets (list), closed on rt_curl_close */
    size_t active;         /* length of reqs */
    size_t nfailed;        /* requests whose socket could not be polled */
    int closing;           /* rt_curl_close runs: ignore curl callbacks */
    /* Easy handles of ended requests, reset, for the next ones: a new
     * handle costs its allocations (the handle, its transfer buffers)
     * and their frees on every request. */
    CURL **idle;
    size_t nidle, cap_idle;
    size_t idle_low;     /* fewest idle since idle_since: never needed */
    uint64_t idle_since; /* loop time the window began */
    unsigned idle_trim_ms;
    int env_proxy; /* a proxy variable curl reads was set at start */
};

/* A socket curl asked us to watch. Freed by its handle's close callback. */
struct rt_curl_sock {
    uv_poll_t poll;
    rt_curl_t *c;
    curl_socket_t fd;
    rt_curl_sock_t *prev, *next;
};

/* Offsets of one response header in the request's header buffer. */
typedef struct {
    size_t name_off, name_len, value_off, value_len;
} rt_curl_hoff_t;

struct rt_curl_req {
    rt_curl_t *c;
    CURL *easy;              /* added to c->multi while in flight */
    struct curl_slist *hdrs; /* request headers, owned */
    rt_curl_done_cb cb;
    void *data;
    rt_curl_req_t *prev, *next;
    char *body; /* response body, body_len of body_cap */
    size_t body_len, body_cap;
    uint64_t max_body; /* 0: unlimited */
    char *hbuf;        /* response header names and values */
    size_t hbuf_len, hbuf_cap;
    rt_curl_hoff_t *hoff; /* nh headers in hbuf */
    size_t nh, hcap;
    int too_large;     /* 1: body over max_body, 2: headers */
    int oom;           /* a response buffer could not grow */
    int sock_failed;   /* a socket could not be polled */
    int deny_internal; /* see rt_curl_opts_t */
    rt_cidr_t *allow;
    size_t nallow;
    char blocked[INET6_ADDRSTRLEN]; /* an address refused, or "" */
    int in_multi;                   /* in c->multi and c->reqs (else ended) */
    uint64_t body_total;            /* body bytes received, for max_body */
    char errbuf[CURL_ERROR_SIZE];
    /* Streamed responses (rt_curl_open); body holds the unread bytes. */
    rt_curl_event_cb ev_cb;   /* non-NULL: a streamed request */
    size_t buffer_limit;      /* unread bytes before the pause */
    long last_status;         /* of the last status line seen */
    int follow;               /* follow_redirects: a 3xx is not final */
    int paused;               /* write_cb returned CURL_WRITEFUNC_PAUSE */
    int head_done, head_told; /* the final head is in / was delivered */
    int data_pending;         /* bytes came since the last DATA event */
    int ended, end_told;      /* the transfer is over / END delivered */
    int end_error;            /* 0, or the error code once ended */
    int in_notify;            /* in c->notify */
    rt_curl_req_t *nprev, *nnext;
};

static unsigned rt__global_refs; /* engines alive: curl_global_* pairing */

static void check_info(rt_curl_t *c);
static void notify_add(rt_curl_req_t *r);

/* The request an easy handle belongs to (CURLOPT_PRIVATE), or NULL. */
static rt_curl_req_t *req_of(CURL *easy)
{
    char *p = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK)
        return NULL;
    return (rt_curl_req_t *)(void *)p;
}

/* ---- buffers ---------------------------------------------------------- */

static int hbuf_append(rt_curl_req_t *r, const char *p, size_t n)
{
    if (r->hbuf_len + n > RT_CURL_MAX_HEADER_BYTES) {
        r->too_large = 2;
        return -1;
    }
    if (rt_buf_append(&r->hbuf, &r->hbuf_len, &r->hbuf_cap, p, n) < 0) {
        r->oom = 1;
        return -1;
    }
    return 0;
}

/* ---- curl data callbacks ---------------------------------------------- */

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    rt_curl_req_t *r = ud;
    size_t len = size * n;
    /* A reader that does not keep up: curl keeps these bytes and offers
     * them again when rt_curl_consume unpauses the transfer. */
    if (r->ev_cb != NULL && len > 0 && r->body_len >= r->buffer_limit) {
        r->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r->max_body &&
        (len > r->max_body || r->body_total > r->max_body - len)) {
        r->too_large = 1;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    if (rt_buf_append(&r->body, &r->body_len, &r->body_cap, p, len) < 0) {
        r->oom = 1;
        return 0;
    }
    r->body_total += len;
    if (r->ev_cb != NULL && len > 0) {
        r->head_done = 1; /* body bytes come after the final head */
        r->data_pending = 1;
        notify_add(r);
    }
    return len;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int has_header(const rt_curl_req_t *r, const char *name)
{
    size_t i, n = strlen(name);
    for (i = 0; i < r->nh; i++)
        if (r->hoff[i].name_len == n &&
            strncasecmp(r->hbuf + r->hoff[i].name_off, name, n) == 0)
            return 1;
    return 0;
}

/* The blank line after a header block: for a streamed request, the head
 * is final unless it is a 1xx or a redirect curl is about to follow. */
static void head_end(rt_curl_req_t *r)
{
    long st = r->last_status;
    if (r->ev_cb == NULL || r->head_done || st < 200)
        return;
    if (r->follow && st >= 300 && st < 400 && has_header(r, "location"))
        return;
    r->head_done = 1;
    notify_add(r);
}

/* One header line (with its CRLF) of a response. A status line starts a
 * new header block: only the last response's headers (after 1xx and
 * followed redirects) are kept. */
static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    rt_curl_req_t *r = ud;
    size_t len = size * n, total = len, i, vs;
    rt_curl_hoff_t *h;

    while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n'))
        len--;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->nh = 0;
        r->hbuf_len = 0;
        /* "HTTP/1.1 200 OK", "HTTP/2 200": the code after the space */
        for (i = 5; i < len && p[i] != ' '; i++)
            ;
        r->last_status = 0;
        for (i++; i < len && p[i] >= '0' && p[i] <= '9'; i++)
            r->last_status = r->last_status * 10 + (p[i] - '0');
        return total;
    }
    if (len == 0) {
        head_end(r);
        return total;
    }
    if (is_space(p[0])) { /* obsolete line folding: continue the value */
        if (r->nh == 0)
            return total;
        while (len > 0 && is_space(p[0]))
            p++, len--;
        while (len > 0 && is_space(p[len - 1]))
            len--;
        if (hbuf_append(r, " ", 1) < 0 || hbuf_append(r, p, len) < 0)
            return 0;
        r->hoff[r->nh - 1].value_len += len + 1;
        return total;
    }
    for (i = 0; i < len && p[i] != ':'; i++)
        ;
    if (i == len || i == 0)
        return total; /* not a header line; ignore it */
    if (r->nh == r->hcap) {
        size_t ncap = r->hcap ? r->hcap * 2 : 16;
        rt_curl_hoff_t *nh = realloc(r->hoff, ncap * sizeof(*nh));
        if (nh == NULL) {
            r->oom = 1;
            return 0;
        }
        r->hoff = nh;
        r->hcap = ncap;
    }
    h = &r->hoff[r->nh];
    h->name_off = r->hbuf_len;
    h->name_len = i;
    while (h->name_len > 0 && is_space(p[h->name_len - 1]))
        h->name_len--;
    if (hbuf_append(r, p, h->name_len) < 0)
        return 0;
    for (vs = i + 1; vs < len && is_space(p[vs]); vs++)
        ;
    while (len > vs && is_space(p[len - 1]))
        len--;
    h->value_off = r->hbuf_len;
    h->value_len = len - vs;
    if (hbuf_append(r, p + vs, len - vs) < 0)
        return 0;
    r->nh++;
    return total;
}

/* ---- sockets and timer ------------------------------------------------ */

static void sock_close_cb(uv_handle_t *h)
{
    free(h->data);
}

/* Stops watching a socket and unlinks it; the memory goes on close. */
static void sock_close(rt_curl_t *c, rt_curl_sock_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    rt_curl_sock_t *s = h->data;
    rt_curl_t *c = s->c;
    curl_socket_t fd = s->fd; /* s may be closed by socket_action */
    int flags = 0, running;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    (void)curl_multi_socket_action(c->multi, fd, flags, &running);
    check_info(c);
}

/* Marks the transfer of easy as failed (its socket cannot be watched); it
 * is completed with an error after the current socket_action returns. */
static void sock_fail(rt_curl_t *c, CURL *easy)
{
    rt_curl_req_t *r = easy ? req_of(easy) : NULL;
    if (r == NULL || r->sock_failed)
        return;
    r->sock_failed = 1;
    c->nfailed++;
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what, or stop watching it. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                   void *socketp)
{
    rt_curl_t *c = userp;
    rt_curl_sock_t *s = socketp;
    int events = 0;

    if (c->closing)
        return 0;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            sock_close(c, s);
            (void)curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = malloc(sizeof(*s));
        if (s == NULL)
            goto fail;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) < 0) {
            free(s);
            goto fail;
        }
        s->poll.data = s;
        s->c = c;
        s->fd = fd;
        s->prev = NULL;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        if (curl_multi_assign(c->multi, fd, s) != CURLM_OK) {
            sock_close(c, s);
            goto fail;
        }
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    if (uv_poll_start(&s->poll, events, poll_cb) < 0)
        goto fail;
    return 0;
fail:
    sock_fail(c, easy);
    return 0;
}

static void timeout_cb(uv_timer_t *t)
{
    rt_curl_t *c = t->data;
    int running;
    (void)curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_info(c);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms the timer; a 0 ms timeout runs
 * socket_action from the loop, never from inside curl. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    rt_curl_t *c = userp;
    (void)multi;
    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        (void)uv_timer_start(&c->timer, timeout_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- requests --------------------------------------------------------- */

/* Adds r to the list at *head (reqs or ended). */
static void list_add(rt_curl_req_t **head, rt_curl_req_t *r)
{
    r->prev = NULL;
    r->next = *head;
    if (*head)
        (*head)->prev = r;
    *head = r;
}

static void list_del(rt_curl_req_t **head, rt_curl_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        *head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Takes a request out of the multi's bookkeeping (not out of the multi). */
static void req_unlink(rt_curl_req_t *r)
{
    rt_curl_t *c = r->c;
    list_del(&c->reqs, r);
    r->in_multi = 0;
    c->active--;
    if (r->sock_failed)
        c->nfailed--;
}

/* Queues r's pending events for delivery (deliver, after socket_action). */
static void notify_add(rt_curl_req_t *r)
{
    rt_curl_t *c = r->c;
    if (r->in_notify)
        return;
    r->in_notify = 1;
    r->nprev = NULL;
    r->nnext = c->notify;
    if (c->notify)
        c->notify->nprev = r;
    c->notify = r;
}

static void notify_del(rt_curl_req_t *r)
{
    rt_curl_t *c = r->c;
    if (!r->in_notify)
        return;
    r->in_notify = 0;
    if (r->nprev)
        r->nprev->nnext = r->nnext;
    else
        c->notify = r->nnext;
    if (r->nnext)
        r->nnext->nprev = r->nprev;
    r->nprev = r->nnext = NULL;
}

/* Delivers queued stream events, one per callback: the callback may
 * consume (which may queue more), or release any request, this one
 * included, so the list is read again from its head after each call. */
static void deliver(rt_curl_t *c)
{
    rt_curl_req_t *r;
    rt_curl_event_t ev;
    while ((r = c->notify) != NULL) {
        if (r->head_done && !r->head_told) {
            r->head_told = 1;
            ev = RT_CURL_EV_HEAD;
        } else if (r->data_pending && r->head_told) {
            r->data_pending = 0;
            if (r->body_len == 0)
                continue; /* consumed meanwhile */
            ev = RT_CURL_EV_DATA;
        } else if (r->ended && !r->end_told) {
            r->end_told = 1;
            ev = RT_CURL_EV_END;
        } else {
            notify_del(r);
            continue;
        }
        r->ev_cb(r, ev, r->data);
    }
}

/* Is any variable curl takes a proxy from set (not empty)? curl reads
 * <scheme>_proxy (and the upper-case one for https) and all_proxy. */
static int env_proxy_set(void)
{
    static const char *const names[] = {"http_proxy",  "HTTP_PROXY",
                                        "https_proxy", "HTTPS_PROXY",
                                        "all_proxy",   "ALL_PROXY"};
    size_t i;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        if (v != NULL && *v != '\0')
            return 1;
    }
    return 0;
}

/* An easy handle for a new request: an idle one, or a new one. */
static CURL *easy_get(rt_curl_t *c)
{
    if (c->nidle == 0)
        return curl_easy_init();
    c->nidle--;
    if (c->nidle < c->idle_low)
        c->idle_low = c->nidle;
    return c->idle[c->nidle];
}

/* Frees the handles that stayed idle through a whole window (at least
 * idle_low of them were never taken), keeping RT_CURL_IDLE_EASY_KEEP. */
static void easy_trim(rt_curl_t *c)
{
    uint64_t now = uv_now(c->loop);
    if (now - c->idle_since < c->idle_trim_ms)
        return;
    while (c->idle_low > 0 && c->nidle > RT_CURL_IDLE_EASY_KEEP) {
        curl_easy_cleanup(c->idle[--c->nidle]);
        c->idle_low--;
    }
    c->idle_low = c->nidle;
    c->idle_since = now;
}

/* An easy handle out of the multi: kept for the next request with none
 * of this one's options (curl_easy_reset), or freed. */
static void easy_put(rt_curl_t *c, CURL *e)
{
    if (!c->closing && c->nidle == c->cap_idle &&
        c->cap_idle < RT_CURL_IDLE_EASY_MAX) {
        size_t cap = c->cap_idle == 0 ? 64 : c->cap_idle * 2;
        CURL **grown = realloc(c->idle, cap * sizeof(*grown));
        if (grown != NULL) {
            c->idle = grown;
            c->cap_idle = cap;
        }
    }
    if (c->closing || c->nidle == c->cap_idle) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_reset(e);
    c->idle[c->nidle++] = e;
    easy_trim(c);
}

/* Frees a request that is no longer in the multi nor in the list. */
static void req_free(rt_curl_req_t *r)
{
    easy_put(r->c, r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r->hbuf);
    free(r->hoff);
    free(r->allow);
    free(r);
}

/* CURLOPT_OPENSOCKETFUNCTION with deny_internal: the address curl is
 * about to connect to (after DNS, after each redirect) is checked here,
 * so no name resolving to an internal address gets through. */
static curl_socket_t open_socket_cb(void *data, curlsocktype purpose,
                                    struct curl_sockaddr *a)
{
    rt_curl_req_t *r = data;
    size_t i;
    (void)purpose;
    if (rt_netaddr_is_internal(&a->addr)) {
        for (i = 0; i < r->nallow; i++)
            if (rt_cidr_contains(&r->allow[i], &a->addr))
                break;
        if (i == r->nallow) {
            const void *ip;
            if (a->family == AF_INET6)
                ip = &((struct sockaddr_in6 *)&a->addr)->sin6_addr;
            else
                ip = &((struct sockaddr_in *)&a->addr)->sin_addr;
            if (inet_ntop(a->family, ip, r->blocked, sizeof r->blocked) == NULL)
                snprintf(r->blocked, sizeof r->blocked, "?");
            return CURL_SOCKET_BAD;
        }
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* The code (rt_err.h) of a failed transfer (see rt_curl_result_t). */
static int error_code(rt_curl_req_t *r, CURLcode rc)
{
    long os_errno = 0;
    if (r->blocked[0] != '\0')
        return RT_EBLOCKED;
    if (r->too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return RT_ETOO_LARGE;
    if (r->oom)
        return RT_ENOMEM;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return RT_ETIMEOUT;
    case CURLE_COULDNT_CONNECT:
        if (curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno) !=
            CURLE_OK)
            os_errno = 0;
        return os_errno == ECONNREFUSED ? RT_EREFUSED : RT_ECONNECT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return RT_ERESOLVE;
    case CURLE_UNSUPPORTED_PROTOCOL:
        return RT_EPROTOCOL;
    case CURLE_URL_MALFORMAT:
        return RT_EBAD_URL;
    case CURLE_TOO_MANY_REDIRECTS:
        return RT_EREDIRECTS;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return RT_ETLS;
    case CURLE_GOT_NOTHING:
        return RT_EEMPTY_REPLY;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        return RT_ECONNECTION;
    case CURLE_OUT_OF_MEMORY:
        return RT_ENOMEM;
    default:
        return RT_EFAILED;
    }
}

/* Adds the system's reason to a connect error: curl says only "Couldn't
 * connect to server". */
static void append_errno(rt_curl_req_t *r)
{
    long os_errno = 0;
    size_t len = strlen(r->errbuf);
    if (curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK ||
        os_errno <= 0 || os_errno > INT_MAX)
        return;
    snprintf(r->errbuf + len, sizeof(r->errbuf) - len, " (%s)",
             uv_strerror(uv_translate_sys_error((int)os_errno)));
}

/* The error code of a finished transfer (0 when it succeeded), with its
 * detail in r->errbuf. */
static int finish_error(rt_curl_req_t *r, CURLcode rc)
{
    int code;
    size_t i;
    if (r->sock_failed && rc == CURLE_OK)
        rc = CURLE_COULDNT_CONNECT;
    if (rc == CURLE_OK && !r->sock_failed) {
        r->errbuf[0] = '\0';
        return 0;
    }
    code = error_code(r, rc);
    if (r->blocked[0] != '\0')
        snprintf(r->errbuf, sizeof(r->errbuf),
                 "refused to connect to %s, an internal address", r->blocked);
    else if (r->sock_failed)
        snprintf(r->errbuf, sizeof(r->errbuf),
                 "cannot watch the connection's socket");
    else if (r->too_large == 1 || rc == CURLE_FILESIZE_EXCEEDED)
        snprintf(r->errbuf, sizeof(r->errbuf),
                 "response body exceeds %llu bytes",
                 (unsigned long long)r->max_body);
    else if (r->too_large == 2)
        snprintf(r->errbuf, sizeof(r->errbuf),
                 "response headers exceed %d bytes", RT_CURL_MAX_HEADER_BYTES);
    else if (r->errbuf[0] == '\0')
        snprintf(r->errbuf, sizeof(r->errbuf), "%s", curl_easy_strerror(rc));
    i = strlen(r->errbuf); /* curl's messages may end in a newline */
    while (i > 0 && (r->errbuf[i - 1] == '\n' || r->errbuf[i - 1] == ' '))
        r->errbuf[--i] = '\0';
    if (rc == CURLE_COULDNT_CONNECT && !r->sock_failed && r->blocked[0] == '\0')
        append_errno(r);
    return code;
}

/* Completes a finished transfer: removes it, calls back, frees it. A
 * streamed request is kept (in c->ended) with its END queued. */
static void req_finish(rt_curl_req_t *r, CURLcode rc)
{
    rt_curl_t *c = r->c;
    rt_curl_result_t res;
    rt_curl_header_t small[16], *hs = small;
    size_t i;

    (void)curl_multi_remove_handle(c->multi, r->easy);
    req_unlink(r);
    if (r->ev_cb != NULL) {
        r->end_error = finish_error(r, rc);
        if (r->end_error == 0)
            r->head_done = 1; /* e.g. a HEAD or 204: no body to wait for */
        r->ended = 1;
        list_add(&c->ended, r);
        notify_add(r);
        return;
    }
    memset(&res, 0, sizeof(res));
    if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status) !=
        CURLE_OK)
        res.status = 0;
    res.error = finish_error(r, rc);
    if (res.error != 0) {
        res.message = r->errbuf;
        res.body = "";
    } else {
        if (r->nh > sizeof(small) / sizeof(small[0])) {
            hs = malloc(r->nh * sizeof(*hs));
            if (hs == NULL) {
                res.error = RT_ENOMEM;
                res.message = "cannot collect the response headers";
                res.body = "";
                goto call;
            }
        }
        for (i = 0; i < r->nh; i++) {
            hs[i].name = r->hbuf + r->hoff[i].name_off;
            hs[i].name_len = r->hoff[i].name_len;
            hs[i].value = r->hbuf + r->hoff[i].value_off;
            hs[i].value_len = r->hoff[i].value_len;
        }
        res.message = "";
        res.headers = hs;
        res.nheaders = r->nh;
        res.body = r->body ? r->body : "";
        res.body_len = r->body_len;
    }
call:
    r->cb(r, &res, r->data);
    if (hs != small)
        free(hs);
    req_free(r);
}

/* Reads finished transfers after a socket_action, then fails the
 * transfers whose socket could not be watched. */
static void check_info(rt_curl_t *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        rt_curl_req_t *r;
        CURLcode rc = m->data.result;
        if (m->msg != CURLMSG_DONE)
            continue;
        r = req_of(m->easy_handle);
        if (r == NULL)
            continue;
        req_finish(r, rc);
    }
    while (c->nfailed > 0) {
        rt_curl_req_t *r = c->reqs;
        while (r != NULL && !r->sock_failed)
            r = r->next;
        if (r == NULL)
            break;
        req_finish(r, CURLE_COULDNT_CONNECT);
    }
    deliver(c);
}

/* Events queued by rt_curl_consume (curl may hand over held bytes inside
 * curl_easy_pause) are delivered from here, on the loop. */
static void kick_cb(uv_timer_t *t)
{
    check_info(t->data);
}

/* ---- option checks ------------------------------------------------------ */

/* RFC 9110 token characters (method and header names). */
static int is_token(const char *p, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    size_t i;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || (ch != 0 && strchr(extra, ch))))
            return 0;
    }
    return 1;
}

static int has_ctl(const char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return 1;
    return 0;
}

static int name_is(const rt_curl_header_t *h, const char *name)
{
    return h->name_len == strlen(name) &&
           strncasecmp(h->name, name, h->name_len) == 0;
}

/* Builds the curl header list. Returns 0, RT_EINVAL or ENOMEM. */
static int build_headers(const rt_curl_opts_t *o, struct curl_slist **out,
                         const char **err)
{
    struct curl_slist *list = NULL, *nl;
    int has_ctype = 0, has_expect = 0;
    size_t i;
    char *line;

    for (i = 0; i < o->nheaders; i++) {
        const rt_curl_header_t *h = &o->headers[i];
        if (!is_token(h->name, h->name_len)) {
            *err = "invalid header name";
            goto fail_inval;
        }
        if (has_ctl(h->value, h->value_len)) {
            *err = "header value contains CR, LF or NUL";
            goto fail_inval;
        }
        has_ctype |= name_is(h, "content-type");
        has_expect |= name_is(h, "expect");
        line = malloc(h->name_len + h->value_len + 3);
        if (line == NULL)
            goto fail_nomem;
        memcpy(line, h->name, h->name_len);
        /* "Name;" is how curl sends a header with an empty value ("Name:"
         * would remove it). */
        if (h->value_len == 0) {
            memcpy(line + h->name_len, ";", 2);
        } else {
            memcpy(line + h->name_len, ": ", 2);
            memcpy(line + h->name_len + 2, h->value, h->value_len);
            line[h->name_len + 2 + h->value_len] = '\0';
        }
        nl = curl_slist_append(list, line);
        free(line);
        if (nl == NULL)
            goto fail_nomem;
        list = nl;
    }
    /* No form content type unless asked for, and no 1 s wait for a
     * "100 Continue" that many servers never send. */
    if (!has_ctype && o->body != NULL) {
        nl = curl_slist_append(list, "Content-Type:");
        if (nl == NULL)
            goto fail_nomem;
        list = nl;
    }
    if (!has_expect) {
        nl = curl_slist_append(list, "Expect:");
        if (nl == NULL)
            goto fail_nomem;
        list = nl;
    }
    *out = list;
    return 0;
fail_inval:
    curl_slist_free_all(list);
    return RT_EINVAL;
fail_nomem:
    curl_slist_free_all(list);
    *err = "out of memory";
    return RT_ENOMEM;
}

static long clamp_long(uint64_t v)
{
    return v > (uint64_t)LONG_MAX ? LONG_MAX : (long)v;
}

/* Sets the method and body options on easy. Returns a CURLcode. */
static CURLcode set_method(CURL *e, const char *method, const rt_curl_opts_t *o)
{
    CURLcode rc = CURLE_OK;
    int needs_body = strcmp(method, "POST") == 0 ||
                     strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;

    if (o->body != NULL || needs_body) {
        /* Size first: COPYPOSTFIELDS copies that many bytes. */
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                              (curl_off_t)(o->body ? o->body_len : 0));
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS,
                                  o->body ? o->body : "");
        if (rc == CURLE_OK && strcmp(method, "POST") != 0)
            rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        rc = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    return rc;
}

/* ---- public API --------------------------------------------------------- */

/* Starts a whole (cb) or streamed (ev_cb) request; see rt_curl_start. */
static int start(rt_curl_t *c, const rt_curl_opts_t *o, rt_curl_done_cb cb,
                 rt_curl_event_cb ev_cb, size_t buffer_bytes, void *data,
                 rt_curl_req_t **out, const char **err)
{
    const char *dummy, *method = o->method;
    rt_curl_req_t *r;
    CURL *e;
    int rc;

    if (err == NULL)
        err = &dummy;
    if (out != NULL)
        *out = NULL;
    if (o->url == NULL) {
        *err = "missing url";
        return RT_EINVAL;
    }
    if (method == NULL)
        method = o->body ? "POST" : "GET";
    if (!is_token(method, strlen(method))) {
        *err = "invalid method";
        return RT_EINVAL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto fail_alloc;
    rc = build_headers(o, &r->hdrs, err);
    if (rc < 0) {
        free(r);
        return rc;
    }
    e = r->easy = easy_get(c);
    if (e == NULL)
        goto fail_easy;
    r->c = c;
    r->cb = cb;
    r->ev_cb = ev_cb;
    r->buffer_limit = buffer_bytes ? buffer_bytes : RT_CURL_STREAM_BUFFER;
    r->follow = o->follow_redirects;
    r->data = data;
    r->max_body = o->max_body;

#define SETOPT(opt, val)                                                       \
    do {                                                                       \
        if (curl_easy_setopt(e, opt, val) != CURLE_OK)                         \
            goto fail_setopt;                                                  \
    } while (0)
    SETOPT(CURLOPT_URL, o->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    /* Aborting while the threaded resolver runs detaches the thread
     * instead of blocking the loop until getaddrinfo returns. */
    SETOPT(CURLOPT_QUICK_EXIT, 1L);
    SETOPT(CURLOPT_PRIVATE, (void *)r);
    SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(CURLOPT_WRITEDATA, (void *)r);
    SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(CURLOPT_HEADERDATA, (void *)r);
    SETOPT(CURLOPT_USERAGENT, "chorus");
    /* No proxy in the environment when the engine started: say so, and
     * curl skips its five getenv look-ups on every transfer. */
    if (!c->env_proxy)
        SETOPT(CURLOPT_PROXY, "");
    SETOPT(CURLOPT_HTTPHEADER, r->hdrs);
    SETOPT(CURLOPT_TIMEOUT_MS, clamp_long(o->timeout_ms));
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, clamp_long(o->connect_timeout_ms));
    /* Early failure on a too large Content-Length; not for HEAD, whose
     * Content-Length announces a body that never comes. */
    if (o->max_body > 0 && strcmp(method, "HEAD") != 0)
        SETOPT(CURLOPT_MAXFILESIZE_LARGE,
               (curl_off_t)(o->max_body > (uint64_t)INT64_MAX
                                ? INT64_MAX
                                : (int64_t)o->max_body));
    SETOPT(CURLOPT_FOLLOWLOCATION, o->follow_redirects ? 1L : 0L);
    SETOPT(CURLOPT_MAXREDIRS, o->max_redirects < 0
                                  ? (long)RT_CURL_DEFAULT_REDIRECTS
                                  : o->max_redirects);
    /* Peer and host verification stay on: a CA file widens what is
     * trusted, it never turns checking off. */
    if (o->ca_file != NULL)
        SETOPT(CURLOPT_CAINFO, o->ca_file);
    if (o->deny_internal) {
        r->deny_internal = 1;
        if (o->nallow > 0) {
            r->allow = malloc(o->nallow * sizeof(*r->allow));
            if (r->allow == NULL)
                goto fail_setopt;
            memcpy(r->allow, o->allow, o->nallow * sizeof(*r->allow));
            r->nallow = o->nallow;
        }
        SETOPT(CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
        SETOPT(CURLOPT_OPENSOCKETDATA, (void *)r);
        /* a pooled connection was opened for another request's checks */
        SETOPT(CURLOPT_FRESH_CONNECT, 1L);
        SETOPT(CURLOPT_FORBID_REUSE, 1L);
    }
#undef SETOPT
    if (set_method(e, method, o) != CURLE_OK)
        goto fail_setopt;
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
        goto fail_setopt;

    list_add(&c->reqs, r);
    r->in_multi = 1;
    c->active++;
    if (out != NULL)
        *out = r;
    return 0;

fail_setopt:
    curl_easy_cleanup(e);
fail_easy:
    curl_slist_free_all(r->hdrs);
    free(r->allow);
    free(r);
fail_alloc:
    *err = "out of memory";
    return RT_ENOMEM;
}

int rt_curl_start(rt_curl_t *c, const rt_curl_opts_t *o, rt_curl_done_cb cb,
                  void *data, rt_curl_req_t **out, const char **err)
{
    return start(c, o, cb, NULL, 0, data, out, err);
}

int rt_curl_open(rt_curl_t *c, const rt_curl_opts_t *o, size_t buffer_bytes,
                 rt_curl_event_cb cb, void *data, rt_curl_req_t **out,
                 const char **err)
{
    return start(c, o, NULL, cb, buffer_bytes, data, out, err);
}

void rt_curl_abort(rt_curl_req_t *r)
{
    rt_curl_t *c = r->c;
    notify_del(r);
    if (r->in_multi) {
        (void)curl_multi_remove_handle(c->multi, r->easy);
        req_unlink(r);
    } else {
        list_del(&c->ended, r);
    }
    req_free(r);
}

long rt_curl_status(const rt_curl_req_t *r)
{
    return r->head_done ? r->last_status : 0;
}

size_t rt_curl_header_count(const rt_curl_req_t *r)
{
    return r->head_done ? r->nh : 0;
}

int rt_curl_header(const rt_curl_req_t *r, size_t i, rt_curl_header_t *out)
{
    if (!r->head_done || i >= r->nh)
        return RT_EINVAL;
    out->name = r->hbuf + r->hoff[i].name_off;
    out->name_len = r->hoff[i].name_len;
    out->value = r->hbuf + r->hoff[i].value_off;
    out->value_len = r->hoff[i].value_len;
    return 0;
}

const char *rt_curl_body(const rt_curl_req_t *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

void rt_curl_consume(rt_curl_req_t *r, size_t n)
{
    rt_curl_t *c = r->c;
    if (n >= r->body_len) {
        r->body_len = 0;
    } else {
        memmove(r->body, r->body + n, r->body_len - n);
        r->body_len -= n;
    }
    if (!r->paused || !r->in_multi || r->body_len >= r->buffer_limit)
        return;
    /* curl may hand the held bytes to write_cb inside this call (they
     * queue an event) and arms its timer to go on reading. */
    if (curl_easy_pause(r->easy, CURLPAUSE_CONT) != CURLE_OK)
        return; /* still paused: the next consume tries again */
    r->paused = 0;
    if (c->notify != NULL)
        (void)uv_timer_start(&c->kick, kick_cb, 0, 0);
}

int rt_curl_ended(const rt_curl_req_t *r, int *error, const char **message)
{
    if (!r->ended)
        return 0;
    *error = r->end_error;
    *message = r->end_error ? r->errbuf : "";
    return 1;
}

size_t rt_curl_idle(const rt_curl_t *c)
{
    return c->nidle;
}

void rt_curl_set_idle_trim(rt_curl_t *c, unsigned trim_ms)
{
    c->idle_trim_ms = trim_ms;
}

size_t rt_curl_active(const rt_curl_t *c)
{
    return c->active;
}

/* Close callback of the engine's timers: the last one frees it. */
static void engine_close_cb(uv_handle_t *h)
{
    rt_curl_t *c = h->data;
    if (--c->open_handles > 0)
        return;
    free(c);
    if (--rt__global_refs == 0)
        curl_global_cleanup();
}

rt_curl_t *rt_curl_new(uv_loop_t *loop)
{
    rt_curl_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    if (rt__global_refs == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        goto fail_global;
    rt__global_refs++;
    c->loop = loop;
    c->idle_trim_ms = RT_CURL_IDLE_TRIM_MS;
    c->env_proxy = env_proxy_set();
    c->multi = curl_multi_init();
    if (c->multi == NULL)
        goto fail_multi;
    if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb) ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, (void *)c) ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb) ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, (void *)c) ||
        curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS,
                          (long)RT_CURL_MAX_IDLE))
        goto fail_setopt;
    if (uv_timer_init(loop, &c->timer) < 0)
        goto fail_setopt;
    c->timer.data = c;
    c->open_handles = 1;
    if (uv_timer_init(loop, &c->kick) < 0) {
        /* The timer's close frees the engine. */
        curl_multi_cleanup(c->multi);
        uv_close((uv_handle_t *)&c->timer, engine_close_cb);
        return NULL;
    }
    c->kick.data = c;
    c->open_handles++;
    return c;

fail_setopt:
    curl_multi_cleanup(c->multi);
fail_multi:
    if (--rt__global_refs == 0)
        curl_global_cleanup();
fail_global:
    free(c);
    return NULL;
}

void rt_curl_close(rt_curl_t *c)
{
    while (c->reqs != NULL)
        rt_curl_abort(c->reqs);
    while (c->ended != NULL)
        rt_curl_abort(c->ended);
    while (c->nidle > 0)
        curl_easy_cleanup(c->idle[--c->nidle]);
    free(c->idle);
    c->idle = NULL;
    c->cap_idle = 0;
    /* Stop polling before curl closes the pooled sockets. */
    while (c->socks != NULL)
        sock_close(c, c->socks);
    c->closing = 1;
    (void)curl_multi_cleanup(c->multi);
    c->multi = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, engine_close_cb);
    uv_timer_stop(&c->kick);
    uv_close((uv_handle_t *)&c->kick, engine_close_cb);
}
