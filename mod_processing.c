/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements.  The ASF licenses this file to You
 * under the Apache License, Version 2.0 (the "License"); you may not
 * use this file except in compliance with the License.  You may obtain
 * a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */


/*
 * mod_processing: sends "102 Processing" interim responses while a handler
 * runs long, so that proxies, CDNs and clients do not give up on a silent
 * connection.  How it works, and why: DESIGN.md.
 *
 * One watchdog thread per child sends the 102s with
 * ap_send_interim_response() on a shadow request of its own.  It touches
 * only the module's records (under the lock), its own duplicate of the
 * socket, and on TLS the connection's SSL, with a private write BIO, while
 * the worker runs no OpenSSL code on the connection.  That covers mod_ssl's
 * filters (the gates disarm before any byte reaches them), its request
 * hooks in subrequests and redirects (the record is paused), and handshake
 * messages OpenSSL owes the peer (the tick is skipped).  Read-only getters
 * a handler calls while armed (SSL_get_*, ssl_var_lookup) are not covered
 * and need not be: they read fields SSL_write on an idle, established
 * connection never writes.
 *
 * Parts: the lock and the deadline heap; system calls; the watchdog thread
 * and its lifecycle; the worker side in call order (handler, decision, body
 * filter, arm, gates, disarm); TLS; configuration, counters and
 * registration.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mpm_common.h"
#include "util_filter.h"
#include "mod_ssl.h"
#include "mod_status.h"

#include "apr_atomic.h"
#include "apr_lib.h"
#include "apr_network_io.h"
#include "apr_optional_hooks.h"
#include "apr_ring.h"
#include "apr_shm.h"
#include "apr_strings.h"
#include "apr_thread_cond.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"

#if APR_HAVE_NETINET_IN_H
#include <netinet/in.h>
#endif
/* The Unix calls of the "System calls" part; without them "Processing On"
 * is refused at configuration time. */
#if APR_HAVE_SYS_SOCKET_H && APR_HAVE_FCNTL_H && APR_HAVE_UNISTD_H \
    && APR_HAVE_PTHREAD_H && APR_HAS_THREADS
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#if defined(F_DUPFD_CLOEXEC) && defined(MSG_DONTWAIT) && defined(MSG_NOSIGNAL)
#define PROC_HAS_UNIX_IO 1
#endif
#endif

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

module AP_MODULE_DECLARE_DATA processing_module;

/* mod_ssl's optional hook, declared as in mod_ssl_openssl.h, which not
 * every distribution installs. */
APR_DECLARE_EXTERNAL_HOOK(ssl, SSL, int, pre_handshake,
                          (conn_rec *c, SSL *ssl, int is_proxy))

/* conn_rec->outgoing and the child_stopping hook came with httpd 2.4.49,
 * ap_ssl_conn_is_ssl() with 2.4.47. */
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 116)
#define PROC_HAS_OUTGOING 1
#endif
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 110)
#define PROC_HAS_CHILD_STOPPING 1
#endif
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 102)
#include "http_ssl.h"
#define PROC_HAS_SSL_CONN_IS_SSL 1
#endif

#define UNSET -1

#define PROC_DEFAULT_INTERVAL   apr_time_from_sec(20)
#define PROC_DEFAULT_MAX_COUNT  5
#define PROC_MIN_INTERVAL       apr_time_from_msec(100)
#define PROC_MAX_DURATION       apr_time_from_sec(3600)
#define PROC_MAX_COUNT_LIMIT    1000

/* mod_proxy_http answers 502 at a backend's 10th interim response in a row
 * (AP_MAX_INTERIM_RESPONSES): a recognised mod_proxy front takes 9. */
#define PROC_MOD_PROXY_CAP      9

/* ProcessingClients: who gets 102s. */
#define PROC_CLIENTS_KNOWN      0   /* asked, allowed, or a known family */
#define PROC_CLIENTS_PREFER     1   /* asked (Prefer) only */
#define PROC_CLIENTS_ALL        2   /* every HTTP/1.1 client */

#define PROC_INTERIM_MAX        64  /* longest interim the writer takes */
/* Room in the record for one 102 as sent, in clear or as a TLS record; a
 * larger one goes to a heap buffer, never dropped. */
#define PROC_PENDING_MAX        256
#define PROC_LOG_ID_MAX         32

/* The watchdog wakes on a 10 ms grid (DESIGN.md, "Scheduling"). */
#define PROC_WAKE_GRID          apr_time_from_msec(10)

/* How long a stopping child waits for the lock and for the watchdog. */
#define PROC_EXIT_WAIT          apr_time_from_sec(1)
#define PROC_EXIT_POLL          apr_time_from_msec(5)

#define PROC_NOT_QUEUED         ((apr_size_t)-1)
#define PROC_NEVER              APR_INT64_MAX

/* The watchdog's lifecycle, proc_wd.state: read with apr_atomic_read32,
 * changed with the lock held except where noted. */
#define PROC_WD_OFF             0   /* not set up: no 102s */
#define PROC_WD_READY           1   /* set up; no thread before first arm */
#define PROC_WD_RUNNING         2   /* thread started */
#define PROC_WD_FAILED          3   /* thread or shadow not made: no 102s */
#define PROC_WD_CLOSING         4   /* child stopping: no arm, thread ends */
#define PROC_WD_EXITED          5   /* thread returned (its own cas) */
#define PROC_WD_GONE            6   /* child pool cleanup ran (lock or not):
                                     * records released without the lock */

/* Per-directory configuration; every field UNSET until configured. */
typedef struct {
    int enabled;                    /* Processing On|Off */
    apr_interval_time_t interval;   /* ProcessingInterval */
    apr_interval_time_t delay;      /* ProcessingDelay (default: interval) */
    int max_count;                  /* ProcessingMaxCount, 0 = no limit */
    apr_interval_time_t max_time;   /* ProcessingMaxTime, 0 = no limit */
    int clients;                    /* ProcessingClients, PROC_CLIENTS_* */
    apr_array_header_t *fronts;     /* ProcessingTrustedProxy, or NULL */
    int configured;                 /* any of the above set here */
} proc_dir_cfg;

/* A client family measured to handle 102s (compat/results.md): its
 * User-Agent starts with prefix and contains `contains` (if set). */
typedef struct {
    const char *name;               /* the processing-client note */
    const char *prefix;
    apr_size_t prefix_len;
    const char *contains;           /* or NULL */
    int cap;                        /* most 1xx it takes, 0 = no limit */
    int flags;                      /* PROC_EXACT, PROC_EXPECT, PROC_BROWSER */
} proc_known_client;

#define PROC_EXACT              0x1 /* the User-Agent is just prefix */
#define PROC_EXPECT             0x2 /* 102s after a 100 Continue too */
#define PROC_BROWSER            0x4 /* only with Sec-Fetch-Mode */

#define PROC_KNOWN(name, prefix, contains, cap, flags) \
    {name, prefix, sizeof(prefix) - 1, contains, cap, flags}

static const proc_known_client proc_known_clients[] = {
    PROC_KNOWN("curl", "curl/", NULL, 0, PROC_EXPECT),
    PROC_KNOWN("wget", "Wget/", NULL, 0, PROC_EXPECT),
    PROC_KNOWN("aria2", "aria2/", NULL, 0, 0),
    PROC_KNOWN("lftp", "lftp/", NULL, 0, 0),
    PROC_KNOWN("npm", "npm/", " node/v", 0, 0),
    PROC_KNOWN("python-aiohttp", "Python/", " aiohttp/", 0, PROC_EXPECT),
    PROC_KNOWN("python-httpx", "python-httpx/", NULL, 0, PROC_EXPECT),
    PROC_KNOWN("perl-http-tiny", "HTTP-Tiny/", NULL, 0, PROC_EXPECT),
    PROC_KNOWN("perl-mojolicious", "Mojolicious (Perl)", NULL, 0,
               PROC_EXACT | PROC_EXPECT),
    PROC_KNOWN("ruby-net-http", "Ruby", NULL, 0, PROC_EXACT | PROC_EXPECT),
    PROC_KNOWN("java-httpclient", "Java-http-client/", NULL, 8, 0),
    PROC_KNOWN("apache-httpclient", "Apache-HttpClient/", " (Java/", 0,
               PROC_EXPECT),
    PROC_KNOWN("node-fetch", "node", NULL, 0, PROC_EXACT),
    PROC_KNOWN("node-axios", "axios/", NULL, 0, PROC_EXPECT),
    PROC_KNOWN("node-got", "got (https://github.com/sindresorhus/got)",
               NULL, 0, PROC_EXACT | PROC_EXPECT),
    PROC_KNOWN("go", "Go-http-client/1.1", NULL, 5, PROC_EXACT | PROC_EXPECT),
    PROC_KNOWN("rclone", "rclone/", NULL, 5, PROC_EXPECT),
    PROC_KNOWN("gvfs", "gvfs/", NULL, 0, 0),
    PROC_KNOWN("neon", "cadaver/", " neon/", 127, 0),
    PROC_KNOWN("davix", "libdavix/", NULL, 0, PROC_EXPECT),
    PROC_KNOWN("check_curl", "check_curl/", NULL, 0, PROC_EXPECT),
    PROC_KNOWN("chromium", "Mozilla/5.0 (", "(KHTML, like Gecko) Chrome/", 0,
               PROC_BROWSER),
    PROC_KNOWN("chromium", "Mozilla/5.0 (",
               "(KHTML, like Gecko) HeadlessChrome/", 0, PROC_BROWSER),
    PROC_KNOWN("firefox", "Mozilla/5.0 (", ") Gecko/20100101 Firefox/", 0,
               PROC_BROWSER),
    {NULL, NULL, 0, NULL, 0, 0}
};

/* Counters for mod_status, summed over all children in a shared segment
 * the parent keeps (it survives restarts); apr_atomic, 32-bit. */
typedef struct {
    volatile apr_uint32_t armed_now;    /* requests armed at this moment */
    volatile apr_uint32_t armed_total;  /* requests ever armed */
    volatile apr_uint32_t sent_total;   /* complete 102s sent */
    volatile apr_uint32_t failed_total; /* sends that failed (client gone) */
} proc_stats;

/* A socket address as accept() or getsockname() gives it. */
typedef struct {
    union {
        struct sockaddr sa;
        struct sockaddr_in sin;
#if APR_HAVE_IPV6
        struct sockaddr_in6 sin6;
#endif
    } u;
    socklen_t len;
} proc_addr;

/* Per-connection record, from c->pool, reused by each request on it.
 * [lock]: shared with the watchdog, touched only under the lock.
 * [worker]: the worker's alone.  [arm]: written by the worker before the
 * record is queued (the lock publishes it), then only read. */
typedef struct proc_conn proc_conn;
struct proc_conn {
    APR_RING_ENTRY(proc_conn) link; /* [lock] in proc_wd.conns while fd>=0 */
    int armed;                      /* [worker writes under lock] */
    int paused;                     /* [lock] out of the heap while TLS
                                     * subrequests/redirects run phases */
    apr_uint32_t arm_seq;           /* [lock] bumped by every arm */
    apr_size_t heap_idx;            /* [lock] index in the deadline heap */
    apr_time_t due;                 /* [lock] when the next 102 is due */
    int sent;                       /* [lock] complete 102s this request */
    int dead;                       /* [lock] a send failed: stop */
    int lost;                       /* [lock] a TLS record was not kept */
    unsigned char *pending;         /* [lock] unsent bytes: inline_buf or
                                     * malloc'd (freed with the conn) */
    apr_size_t pending_cap;         /* [lock] size of pending */
    apr_size_t pending_off;         /* [lock] bytes of pending written */
    apr_size_t pending_len;         /* [lock] bytes in pending */
    apr_os_sock_t fd;               /* [lock] our duplicate, or -1 */

    apr_os_sock_t conn_fd;          /* [arm] the client socket's number */
    proc_addr local;                /* [arm] its addresses, to know it */
    proc_addr peer;                 /* [arm] again before duplicating it */
    SSL *ssl;                       /* [arm] mod_ssl's SSL, NULL if plain */
    apr_interval_time_t interval;   /* [arm] effective settings */
    int max_count;                  /* [arm] 0 = no limit */
    apr_time_t stop_at;             /* [arm] no 102 due after this */
    server_rec *s;                  /* [arm] for logging */
    long conn_id;                   /* [arm] c->id, for logging */
    char log_id[PROC_LOG_ID_MAX];   /* [arm] copy of r->log_id */

    conn_rec *c;                    /* [worker] */
    request_rec *r;                 /* [worker] request armed or waiting */
    const char *in_handler;         /* [worker] r->handler while it runs */
    int gates_added;                /* [worker] gate filters installed */
    int socket_copied;              /* [worker] conn_fd, local, peer set */
    int log_debug;                  /* [worker] r logs at debug level */
    int client_cap;                 /* [worker] most 102s r's client takes */

    unsigned char inline_buf[PROC_PENDING_MAX]; /* [lock] see pending */
};

/* A TLS subrequest or redirect that paused its connection's record. */
typedef struct {
    proc_conn *pc;
    apr_uint32_t arm_seq;           /* the arm it paused */
} proc_pause_mark;

/* What the decision to arm found out about a request (proc_refused). */
typedef struct {
    const char *user_agent;             /* the headers it reads */
    const char *prefer;
    int sec_fetch;                      /* Sec-Fetch-Mode: a browser's own */
    int expects_continue;               /* Expect: 100-continue */
    int behind_front;                   /* a front's header, or mod_remoteip
                                         * replaced the client address */
    const proc_known_client *family;    /* its client's family, or NULL */
    int prefers;                        /* Prefer: processing */
    int front_cap;                      /* most 1xx the front takes, or 0 */
    int cap;                            /* most 102s its client takes, or 0 */
} proc_verdict;

/* A heap entry copies its record's due time: ordering reads the array. */
typedef struct {
    apr_time_t due;
    proc_conn *pc;
} proc_heap_entry;

/* What the watchdog logs about one send, once the lock is released. */
typedef struct {
    int level;                      /* 0: nothing to log */
    apr_status_t status;
    const char *what;
    int count;
    server_rec *s;
    long conn_id;
    char log_id[PROC_LOG_ID_MAX];
} proc_wd_event;

/* The watchdog of this child.  A binary heap orders armed records by due
 * time and removes one by index at disarm (apr_skiplist would search). */
typedef struct {
    volatile apr_uint32_t state;    /* PROC_WD_* */
    apr_thread_mutex_t *mutex;      /* guards the records and this struct */
    apr_thread_cond_t *wakeup;      /* signalled to wake the thread */
    apr_thread_t *thread;           /* [lock] */
    apr_time_t sleep_until;         /* [lock] what the thread waits for */
    apr_time_t horizon;             /* [lock] latest due time ever armed */
    apr_uint32_t armed_here;        /* [lock] our share of armed_now */
    proc_heap_entry *heap;          /* [lock] min-heap on due time */
    apr_size_t heap_len;            /* [lock] */
    apr_size_t heap_cap;            /* [lock] */
    APR_RING_HEAD(proc_conn_ring, proc_conn) conns; /* [lock] with an fd */
    server_rec *s;                  /* the main server, for logging */
    /* The thread's own once it runs (made before it starts): */
    apr_pool_t *pool;               /* on an allocator of its own */
    request_rec *shadow;            /* the request every 102 is sent on */
    apr_pool_t *send_pool;          /* the shadow's pool, cleared per 102 */
    BIO *tls_out;                   /* memory BIO for TLS records */
} proc_watchdog;

static proc_watchdog proc_wd;
static proc_stats proc_local_counters;  /* if no shared segment */
static proc_stats *proc_counters = &proc_local_counters;
static ap_filter_rec_t *proc_body_filter_handle;
static ap_filter_rec_t *proc_gate_out_handle;
static ap_filter_rec_t *proc_gate_in_handle;
static ap_filter_rec_t *proc_writer_handle;
static volatile apr_uint32_t proc_tls_refusal_logged;  /* said once */

/* In the TLS part. */
static int proc_tls_idle(SSL *ssl);
static int proc_tls_encode(proc_conn *pc, const char *data, apr_size_t len);
static int proc_tls_not_ours(request_rec *r);
static int proc_disarm(proc_conn *pc, const char *why);

/* ------------------------------------------------------------------ */
/* The lock and the deadline heap                                     */
/*
 * One APR mutex (helgrind and drd understand it) guards the heap, the
 * records' [lock] fields and the descriptor ring; the watchdog sleeps on a
 * condition variable with it.  Nothing logs while holding it.
 */

static void proc_lock(void)
{
    apr_thread_mutex_lock(proc_wd.mutex);
}

static void proc_unlock(void)
{
    apr_thread_mutex_unlock(proc_wd.mutex);
}

/* Lock held: make the watchdog look at the heap again. */
static void proc_wd_wake(void)
{
    apr_thread_cond_signal(proc_wd.wakeup);
}

static apr_uint32_t proc_wd_state(void)
{
    return apr_atomic_read32(&proc_wd.state);
}

/* While a child stops: whether done() came true within about a second
 * (prefork stops in its SIGTERM handler, on a thread that may hold the
 * lock, or may have left the watchdog waiting for it). */
static int proc_exit_wait(int (*done)(void))
{
    apr_time_t waited;

    for (waited = 0; waited < PROC_EXIT_WAIT; waited += PROC_EXIT_POLL) {
        if (done()) {
            return 1;
        }
        apr_sleep(PROC_EXIT_POLL);
    }
    return 0;
}

static int proc_trylock(void)
{
    return apr_thread_mutex_trylock(proc_wd.mutex) == APR_SUCCESS;
}

/* Lock held, as for all the heap functions. */
static void proc_heap_place(apr_size_t i, proc_heap_entry entry)
{
    proc_wd.heap[i] = entry;
    entry.pc->heap_idx = i;
}

/* The sifts move a hole at i, entry in hand, until the entry fits. */
static void proc_heap_sift_up(apr_size_t i, proc_heap_entry entry)
{
    while (i > 0) {
        apr_size_t parent = (i - 1) / 2;
        if (proc_wd.heap[parent].due <= entry.due) {
            break;
        }
        proc_heap_place(i, proc_wd.heap[parent]);
        i = parent;
    }
    proc_heap_place(i, entry);
}

static void proc_heap_sift_down(apr_size_t i, proc_heap_entry entry)
{
    for (;;) {
        apr_size_t child = 2 * i + 1;
        if (child >= proc_wd.heap_len) {
            break;
        }
        if (child + 1 < proc_wd.heap_len
            && proc_wd.heap[child + 1].due < proc_wd.heap[child].due) {
            child++;
        }
        if (entry.due <= proc_wd.heap[child].due) {
            break;
        }
        proc_heap_place(i, proc_wd.heap[child]);
        i = child;
    }
    proc_heap_place(i, entry);
}

/* Grows with realloc (thread-safe, unlike pools) to the child's peak. */
static int proc_heap_push(proc_conn *pc)
{
    proc_heap_entry entry;

    if (proc_wd.heap_len == proc_wd.heap_cap) {
        apr_size_t cap = proc_wd.heap_cap ? 2 * proc_wd.heap_cap : 64;
        proc_heap_entry *heap = realloc(proc_wd.heap, cap * sizeof(*heap));
        if (!heap) {
            return 0;
        }
        proc_wd.heap = heap;
        proc_wd.heap_cap = cap;
    }
    entry.due = pc->due;
    entry.pc = pc;
    proc_heap_sift_up(proc_wd.heap_len++, entry);
    return 1;
}

/* pc->due moved later: its entry follows. */
static void proc_heap_postpone(proc_conn *pc)
{
    proc_heap_entry entry;

    entry.due = pc->due;
    entry.pc = pc;
    proc_heap_sift_down(pc->heap_idx, entry);
}

static void proc_heap_remove(proc_conn *pc)
{
    apr_size_t i = pc->heap_idx;
    proc_heap_entry last;

    if (i == PROC_NOT_QUEUED) {
        return;
    }
    pc->heap_idx = PROC_NOT_QUEUED;
    last = proc_wd.heap[--proc_wd.heap_len];
    if (last.pc == pc) {
        return;
    }
    /* The last entry fills the hole: up if earlier than its parent. */
    if (i > 0 && last.due < proc_wd.heap[(i - 1) / 2].due) {
        proc_heap_sift_up(i, last);
    }
    else {
        proc_heap_sift_down(i, last);
    }
}

static void proc_heap_clear(void)
{
    apr_size_t i;

    for (i = 0; i < proc_wd.heap_len; i++) {
        proc_wd.heap[i].pc->heap_idx = PROC_NOT_QUEUED;
    }
    proc_wd.heap_len = 0;
}

/* ------------------------------------------------------------------ */
/* System calls (Unix only)                                           */
/*
 * The watchdog's own duplicate of the client socket (DESIGN.md).  APR has
 * no per-call non-blocking send, and apr_socket_timeout_set() would change
 * the flags the duplicate shares with the worker's descriptor.
 */
#ifdef PROC_HAS_UNIX_IO

/* Whether ss is `want`: family, port and address (others byte for byte). */
static int proc_same_addr(const proc_addr *want,
                          const struct sockaddr_storage *ss, socklen_t len)
{
    const struct sockaddr *sa = (const struct sockaddr *)ss;

    if (sa->sa_family != want->u.sa.sa_family) {
        return 0;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return in->sin_port == want->u.sin.sin_port
               && in->sin_addr.s_addr == want->u.sin.sin_addr.s_addr;
    }
#if APR_HAVE_IPV6
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        return in6->sin6_port == want->u.sin6.sin6_port
               && !memcmp(&in6->sin6_addr, &want->u.sin6.sin6_addr,
                          sizeof(in6->sin6_addr));
    }
#endif
    return len == want->len && !memcmp(ss, &want->u, len);
}

/* Duplicates socket pc->conn_fd if it still has the addresses copied at
 * arm time: once an ungraceful stop closed it, the number may be another
 * socket's. */
static apr_status_t proc_sys_dup(const proc_conn *pc, apr_os_sock_t *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = fcntl(pc->conn_fd, F_DUPFD_CLOEXEC, 0);

    if (fd < 0) {
        return errno;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0
        || !proc_same_addr(&pc->local, &ss, len)
        || (len = sizeof(ss), getpeername(fd, (struct sockaddr *)&ss,
                                          &len) != 0)
        || !proc_same_addr(&pc->peer, &ss, len)) {
        close(fd);
        return APR_ENOTSOCK;
    }
    *out = fd;
    return APR_SUCCESS;
}

/* Sends what it can without blocking; *sent says how much. */
static apr_status_t proc_sys_send(apr_os_sock_t fd, const unsigned char *buf,
                                  apr_size_t len, apr_size_t *sent)
{
    *sent = 0;
    while (*sent < len) {
        ssize_t n = send(fd, buf + *sent, len - *sent,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            *sent += n;
        }
        else if (n == 0) {
            return APR_EOF;
        }
        else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return APR_EAGAIN;
        }
        else if (errno != EINTR) {
            return errno;
        }
    }
    return APR_SUCCESS;
}

#define proc_sys_close(fd)      close(fd)

/* The watchdog blocks every signal (it inherits the mask): prefork
 * children exit from their SIGTERM handler, which it must never run. */
static apr_status_t proc_sys_thread_create(apr_thread_t **thread,
                                           apr_threadattr_t *attr,
                                           apr_thread_start_t func,
                                           apr_pool_t *p)
{
    sigset_t all, saved;
    apr_status_t rv;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    rv = apr_thread_create(thread, attr, func, NULL, p);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    return rv;
}

#else /* never called: proc_set_enabled refuses "Processing On" */
#define proc_sys_dup(pc, out)                   APR_ENOTIMPL
#define proc_sys_send(fd, buf, len, sent)       (*(sent) = 0, APR_ENOTIMPL)
#define proc_sys_close(fd)                      ((void)(fd))
#define proc_sys_thread_create(t, attr, f, p)   APR_ENOTIMPL
#endif /* PROC_HAS_UNIX_IO */

/* Lock held: closes pc's duplicate, if any: at its disarm, when it leaves
 * the heap for good, or when the child stops. */
static void proc_close_fd(proc_conn *pc)
{
    if (pc->fd >= 0) {
        APR_RING_REMOVE(pc, link);
        proc_sys_close(pc->fd);
        pc->fd = -1;
    }
}

/* ------------------------------------------------------------------ */
/* Watchdog thread                                                    */
/*
 * All of it runs on the watchdog thread with the lock held (but for
 * proc_wd_main's logging), touching only proc_wd, the records' [lock] and
 * [arm] fields, its duplicates and its own memory; on TLS the SSL.
 */

/* Room for len more bytes in pc->pending: past inline_buf, a malloc'd
 * buffer (pools are not thread-safe), freed by proc_conn_cleanup. */
static int proc_wd_reserve(proc_conn *pc, apr_size_t len)
{
    apr_size_t need = pc->pending_len + len;
    unsigned char *buf;

    if (need <= pc->pending_cap) {
        return 1;
    }
    if (pc->pending == pc->inline_buf) {
        if ((buf = malloc(need)) != NULL) {
            memcpy(buf, pc->pending, pc->pending_len);
        }
    }
    else {
        buf = realloc(pc->pending, need);
    }
    if (!buf) {
        return 0;
    }
    pc->pending = buf;
    pc->pending_cap = need;
    return 1;
}

/* Writes what it can of pc->pending without blocking; ev is for the log. */
static void proc_wd_send_pending(proc_conn *pc, proc_wd_event *ev)
{
    apr_size_t n;
    apr_status_t rv = proc_sys_send(pc->fd, pc->pending + pc->pending_off,
                                    pc->pending_len - pc->pending_off, &n);

    pc->pending_off += n;
    if (APR_STATUS_IS_EAGAIN(rv)) {
        ev->level = APLOG_TRACE2;
        ev->what = "would block; retrying next tick";
    }
    else if (rv != APR_SUCCESS) {
        pc->dead = 1;
        ev->level = APLOG_TRACE1;   /* a client gone is no error */
        ev->status = rv;
        ev->what = "not sent; no more for this request";
    }
}

/* Appends an interim response to pc->pending, as one TLS record on TLS. */
static int proc_wd_encode(proc_conn *pc, const char *data, apr_size_t len)
{
    if (pc->ssl) {
        return proc_tls_encode(pc, data, len);
    }
    if (!proc_wd_reserve(pc, len)) {
        return 0;
    }
    memcpy(pc->pending + pc->pending_len, data, len);
    pc->pending_len += len;
    return 1;
}

/* The shadow connection's only output filter: what
 * ap_send_interim_response() wrote, for the record in f->ctx. */
static apr_status_t proc_wd_writer(ap_filter_t *f, apr_bucket_brigade *bb)
{
    proc_conn *pc = f->ctx;
    char buf[PROC_INTERIM_MAX];
    apr_size_t len = sizeof(buf);
    apr_off_t total = 0;
    apr_status_t rv;

    rv = apr_brigade_length(bb, 1, &total);
    if (rv == APR_SUCCESS && total > 0) {
        rv = total <= (apr_off_t)len ? apr_brigade_flatten(bb, buf, &len)
                                     : APR_ENOSPC;
        if (rv == APR_SUCCESS && !proc_wd_encode(pc, buf, len)) {
            rv = APR_EGENERAL;
        }
    }
    apr_brigade_cleanup(bb);
    if (rv != APR_SUCCESS) {
        pc->dead = 1;
    }
    return rv;
}

/* The record's duplicate, made at its first 102: a request that ends
 * sooner costs no system call. */
static apr_status_t proc_wd_dup_socket(proc_conn *pc)
{
    apr_status_t rv = proc_sys_dup(pc, &pc->fd);

    if (rv == APR_SUCCESS) {
        APR_RING_INSERT_TAIL(&proc_wd.conns, pc, proc_conn, link);
    }
    return rv;
}

/* Whether pc has had all the 102s its limits allow (pending bytes aside). */
static int proc_wd_limits_reached(const proc_conn *pc)
{
    return (pc->max_count && pc->sent >= pc->max_count)
           || pc->due > pc->stop_at;
}

/* pc leaves the heap for good; its descriptor goes now. */
static void proc_wd_retire(proc_conn *pc)
{
    proc_heap_remove(pc);
    proc_close_fd(pc);
}

/* One due record: finish or start a 102, then requeue it or let it go. */
static void proc_wd_service(proc_conn *pc, apr_time_t now, proc_wd_event *ev)
{
    apr_status_t rv;

    if (pc->pending_len > 0) {
        proc_wd_send_pending(pc, ev);
    }
    else if (proc_wd_limits_reached(pc)) {
        proc_wd_retire(pc);
        return;
    }
    else if (pc->ssl && !proc_tls_idle(pc->ssl)) {
        ev->level = APLOG_TRACE2;
        ev->what = "skipped: TLS handshake messages pending";
    }
    else if (pc->fd < 0 && (rv = proc_wd_dup_socket(pc)) != APR_SUCCESS) {
        pc->dead = 1;
        ev->level = APLOG_DEBUG;
        ev->status = rv;
        ev->what = "socket closed or not this connection's: no 102";
    }
    else {
        proc_wd.shadow->connection->output_filters->ctx = pc;
        ap_send_interim_response(proc_wd.shadow, 0);
        apr_pool_clear(proc_wd.send_pool);
        if (!pc->dead) {
            proc_wd_send_pending(pc, ev);
        }
        /* Clear text not sent at all is skipped this tick; TLS bytes
         * advanced the record sequence and must go out. */
        if (!pc->ssl && pc->pending_off == 0) {
            pc->pending_len = 0;
        }
    }
    if (!pc->dead && pc->pending_len > 0
        && pc->pending_off == pc->pending_len) {
        pc->sent++;
        pc->pending_off = pc->pending_len = 0;
        apr_atomic_inc32(&proc_counters->sent_total);
        ev->level = APLOG_DEBUG;
        ev->what = "sent 102 Processing";
    }
    ev->count = pc->sent;

    /* Next tick on the schedule (armed + delay + k * interval), skipping
     * ticks missed while the machine was busy. */
    do {
        pc->due += pc->interval;
    } while (pc->due <= now);

    if (pc->dead) {
        pc->pending_len = pc->pending_off = 0;
        proc_wd_retire(pc);
        apr_atomic_inc32(&proc_counters->failed_total);
    }
    else if (pc->pending_len == 0 && proc_wd_limits_reached(pc)) {
        proc_wd_retire(pc);
    }
    else {
        proc_heap_postpone(pc);
    }
}

static apr_time_t proc_wd_wake_slot(apr_time_t t)
{
    return (t + PROC_WAKE_GRID - 1) / PROC_WAKE_GRID * PROC_WAKE_GRID;
}

/* The earliest record if it is due, or a repeat 102 due before slot_end. */
static proc_conn *proc_wd_next_due(apr_time_t now, apr_time_t slot_end)
{
    const proc_heap_entry *first = proc_wd.heap;

    if (proc_wd.heap_len > 0 && (first->due <= now || (first->due <= slot_end
                                                       && first->pc->sent))) {
        return first->pc;
    }
    return NULL;
}

/* The earliest due time or, with nothing queued, the latest ever armed
 * while ahead: requests ending before their first 102 then make no arm
 * signal us, and an idle server passes it once and never wakes. */
static apr_time_t proc_wd_next_wake(apr_time_t now)
{
    if (proc_wd.heap_len > 0) {
        return proc_wd_wake_slot(proc_wd.heap[0].due);
    }
    return proc_wd.horizon > now ? proc_wd_wake_slot(proc_wd.horizon)
                                 : PROC_NEVER;
}

static void proc_wd_sleep(apr_time_t until, apr_time_t now)
{
    proc_wd.sleep_until = until;
    if (until == PROC_NEVER) {
        apr_thread_cond_wait(proc_wd.wakeup, proc_wd.mutex);
    }
    else {
        apr_thread_cond_timedwait(proc_wd.wakeup, proc_wd.mutex,
                                  until > now ? until - now : 0);
    }
    proc_wd.sleep_until = 0;
}

static void *APR_THREAD_FUNC proc_wd_main(apr_thread_t *thread, void *data)
{
    proc_lock();
    while (proc_wd_state() == PROC_WD_RUNNING) {
        apr_time_t now = apr_time_now();
        proc_conn *pc = proc_wd_next_due(now, proc_wd_wake_slot(now));
        proc_wd_event ev;

        if (!pc) {
            proc_wd_sleep(proc_wd_next_wake(now), now);
            continue;
        }
        ev.level = 0;
        ev.status = APR_SUCCESS;
        proc_wd_service(pc, now, &ev);
        if (ev.level && APLOG_IS_LEVEL(pc->s, ev.level)) {
            ev.s = pc->s;
            ev.conn_id = pc->conn_id;
            memcpy(ev.log_id, pc->log_id, sizeof(ev.log_id));
            proc_unlock();
            ap_log_error(APLOG_MARK, ev.level, ev.status, ev.s,
                         "%s (#%d) on connection %ld, request %s", ev.what,
                         ev.count, ev.conn_id, ev.log_id);
            proc_lock();
        }
    }
    proc_unlock();
    /* From here the stop cleanup may join us; no-op once it gave up. */
    apr_atomic_cas32(&proc_wd.state, PROC_WD_EXITED, PROC_WD_CLOSING);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Watchdog lifecycle                                                 */
/*
 * OFF -> READY (child_init) -> RUNNING or FAILED (first arm) -> CLOSING
 * (child_stopping, stop cleanup) -> EXITED (the thread) -> GONE (stop
 * cleanup).  Why the first arm, not child_init: DESIGN.md, "The watchdog".
 */

/* The watchdog's own pool, on an allocator no other thread uses; it holds
 * the lock and the condition variable too.  Unmanaged: nothing destroys it
 * behind our back (proc_wd_stop). */
static apr_status_t proc_wd_make_pool(void)
{
    apr_allocator_t *allocator;
    apr_status_t rv = apr_allocator_create(&allocator);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_pool_create_unmanaged_ex(&proc_wd.pool, NULL, allocator);
    if (rv != APR_SUCCESS) {
        apr_allocator_destroy(allocator);
        return rv;
    }
    apr_allocator_owner_set(allocator, proc_wd.pool);
    apr_pool_tag(proc_wd.pool, "processing_watchdog");
    return APR_SUCCESS;
}

/* The shadow request every 102 is sent on (DESIGN.md, "The 102"), made
 * before the thread exists, all of it on the thread's own memory. */
static apr_status_t proc_wd_make_shadow(void)
{
    apr_pool_t *p = proc_wd.pool;
    apr_status_t rv = apr_pool_create(&proc_wd.send_pool, p);
    conn_rec *c;
    request_rec *r;

    if (rv != APR_SUCCESS) {
        return rv;
    }
    c = apr_pcalloc(p, sizeof(*c));
    c->pool = p;
    c->base_server = proc_wd.s;
    c->bucket_alloc = apr_bucket_alloc_create(p);
    c->output_filters = apr_pcalloc(p, sizeof(*c->output_filters));
    c->output_filters->frec = proc_writer_handle;
    c->output_filters->c = c;

    r = apr_pcalloc(p, sizeof(*r));
    r->pool = proc_wd.send_pool;
    r->connection = c;
    r->server = proc_wd.s;
    r->proto_num = HTTP_VERSION(1, 1);
    r->status = HTTP_PROCESSING;
    r->status_line = "102 Processing";
    r->headers_out = apr_table_make(p, 1);
    proc_wd.shadow = r;
    return APR_SUCCESS;
}

/* Lock held, state READY: RUNNING, or FAILED with the status to log. */
static apr_status_t proc_wd_start(void)
{
    apr_threadattr_t *attr;
    apr_status_t rv = proc_wd_make_shadow();

    if (rv == APR_SUCCESS) {
        rv = apr_threadattr_create(&attr, proc_wd.pool);
    }
    if (rv == APR_SUCCESS && ap_thread_stacksize != 0) {
        /* ThreadStackSize applies to our thread as to the MPM's. */
        rv = apr_threadattr_stacksize_set(attr, ap_thread_stacksize);
    }
    if (rv == APR_SUCCESS) {
        apr_atomic_set32(&proc_wd.state, PROC_WD_RUNNING);
        rv = proc_sys_thread_create(&proc_wd.thread, attr, proc_wd_main,
                                    proc_wd.pool);
    }
    if (rv != APR_SUCCESS) {
        proc_wd.thread = NULL;
        apr_atomic_set32(&proc_wd.state, PROC_WD_FAILED);
    }
    return rv;
}

/* Lock held: no more 102s from this child, no new arm, and every
 * duplicate closed, so each connection closes when httpd closes it. */
static void proc_wd_shut(void)
{
    if (proc_wd_state() < PROC_WD_CLOSING) {
        apr_atomic_set32(&proc_wd.state, PROC_WD_CLOSING);
    }
    proc_heap_clear();
    while (!APR_RING_EMPTY(&proc_wd.conns, proc_conn, link)) {
        proc_conn *pc = APR_RING_FIRST(&proc_wd.conns);
        proc_close_fd(pc);
        pc->dead = 1;
    }
    proc_wd_wake();
}

#ifdef PROC_HAS_CHILD_STOPPING
/* An ungraceful stop closes the sockets of connections whose handlers
 * still run, which our duplicates would keep open.  A graceful stop lets
 * the handlers finish, with their 102s. */
static void proc_child_stopping(apr_pool_t *pchild, int graceful)
{
    apr_uint32_t state = proc_wd_state();

    if (!graceful && state != PROC_WD_OFF && state != PROC_WD_GONE
        && proc_exit_wait(proc_trylock)) {
        proc_wd_shut();
        proc_unlock();
    }
}
#endif

static int proc_wd_exited(void)
{
    return proc_wd_state() == PROC_WD_EXITED;
}

/* Pre-cleanup of the child pool: after the MPM's workers finished (so
 * 102s flow through a graceful stop), before sub-pools with records go.
 * prefork runs it in its SIGTERM handler, on a thread that may hold the
 * lock: so the lock is only tried, and the thread only waited for, about
 * a second each; a thread that does not return is left to the process's
 * exit with all it could touch (its pool, lock, condvar and the heap). */
static apr_status_t proc_wd_stop(void *data)
{
    apr_status_t rv;
    int locked = proc_exit_wait(proc_trylock);
    int joinable;

    if (locked) {
        proc_wd_shut();
        proc_unlock();
    }
    joinable = locked
               && (!proc_wd.thread || proc_exit_wait(proc_wd_exited));
    apr_atomic_set32(&proc_wd.state, PROC_WD_GONE);
    /* Requests still armed leave the shared count with the child. */
    apr_atomic_sub32(&proc_counters->armed_now, proc_wd.armed_here);
    proc_wd.armed_here = 0;
    if (!joinable) {
        return APR_SUCCESS;
    }
    if (proc_wd.thread) {
        apr_thread_join(&rv, proc_wd.thread);
    }
    free(proc_wd.heap);
    BIO_free(proc_wd.tls_out);
    apr_pool_destroy(proc_wd.pool);
    proc_wd.thread = NULL;
    proc_wd.heap = NULL;
    proc_wd.heap_cap = 0;
    proc_wd.tls_out = NULL;
    proc_wd.pool = NULL;
    return APR_SUCCESS;
}

static void proc_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    memset(&proc_wd, 0, sizeof(proc_wd));
    APR_RING_INIT(&proc_wd.conns, proc_conn, link);
    proc_wd.s = s;
    proc_wd.sleep_until = PROC_NEVER;
    rv = proc_wd_make_pool();
    if (rv == APR_SUCCESS) {
        rv = apr_thread_mutex_create(&proc_wd.mutex, APR_THREAD_MUTEX_DEFAULT,
                                     proc_wd.pool);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_thread_cond_create(&proc_wd.wakeup, proc_wd.pool);
    }
    if (rv == APR_SUCCESS && !(proc_wd.tls_out = BIO_new(BIO_s_mem()))) {
        rv = APR_ENOMEM;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "cannot set up the "
                     "watchdog; no 102 Processing will be sent");
        return;
    }
    apr_atomic_set32(&proc_wd.state, PROC_WD_READY);
    apr_pool_pre_cleanup_register(pchild, NULL, proc_wd_stop);
}

/* ------------------------------------------------------------------ */
/* Worker side, in call order: handler, decision, body filter, arm,   */
/* gates and disarm                                                   */

static const char *proc_refused(request_rec *r, const proc_dir_cfg *cfg,
                                proc_verdict *v);
static void proc_arm(request_rec *r, proc_conn *pc, const proc_dir_cfg *cfg,
                     apr_time_t start);
static apr_status_t proc_request_cleanup(void *data);
static apr_status_t proc_conn_cleanup(void *data);

static proc_conn *proc_conn_get(conn_rec *c)
{
    proc_conn *pc = ap_get_module_config(c->conn_config, &processing_module);

    if (!pc) {
        pc = apr_pcalloc(c->pool, sizeof(*pc));
        APR_RING_ELEM_INIT(pc, link);
        pc->heap_idx = PROC_NOT_QUEUED;
        pc->c = c;
        pc->fd = -1;
        pc->pending = pc->inline_buf;
        pc->pending_cap = sizeof(pc->inline_buf);
        ap_set_module_config(c->conn_config, &processing_module, pc);
        apr_pool_cleanup_register(c->pool, pc, proc_conn_cleanup,
                                  apr_pool_cleanup_null);
    }
    return pc;
}

/* Whether r is an internal redirect of the request pc armed or waits for,
 * whose record then covers this handler too. */
static int proc_redirect_of_armed(const request_rec *r, const proc_conn *pc)
{
    for (r = r->prev; pc && pc->r && r; r = r->prev) {
        if (r == pc->r) {
            return 1;
        }
    }
    return 0;
}

/* First of all handlers, always declining: where the module is on, arms
 * now, or once the body has been read (proc_body_filter), if the decision
 * allows. */
static int proc_handler(request_rec *r)
{
    const proc_dir_cfg *cfg = ap_get_module_config(r->per_dir_config,
                                                   &processing_module);
    proc_conn *pc;
    proc_verdict v;
    const char *why;

    /* OFF: the child could not set the watchdog up. */
    if (cfg->enabled != 1 || proc_wd_state() == PROC_WD_OFF) {
        return DECLINED;
    }
    pc = ap_get_module_config(r->connection->conn_config, &processing_module);
    if (r->prev) {
        /* mod_log_config logs the last request of a redirect chain. */
        const char *sent = apr_table_get(r->prev->notes, "processing-sent");
        if (sent) {
            apr_table_setn(r->notes, "processing-sent", sent);
        }
        if (proc_redirect_of_armed(r, pc)) {
            return DECLINED;
        }
    }
    if ((why = proc_refused(r, cfg, &v)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "not armed: %s", why);
        return DECLINED;
    }
    if (v.family) {
        apr_table_setn(r->notes, "processing-client", v.family->name);
    }
    if (v.prefers) {
        /* RFC 7240: tell the client its preference is honoured. */
        apr_table_mergen(r->err_headers_out, "Preference-Applied",
                         "processing");
    }
    pc = proc_conn_get(r->connection);
    if (pc->armed) {
        /* Cannot happen (the last request's end crossed the gate), but a
         * record queued twice would corrupt the heap: disarm, cheaply. */
        AP_DEBUG_ASSERT(!pc->armed);
        pc->r = NULL;
        proc_disarm(pc, "next request");
    }
    pc->r = r;
    pc->client_cap = v.cap;
    if (!ap_request_has_body(r)) {
        /* Complete when its head was read: the clock starts there, as the
         * client's and any proxy's own timer did. */
        proc_arm(r, pc, cfg, r->request_time);
        return DECLINED;
    }
    /* ap_invoke_handler() always sets a name before it runs handlers. */
    r->handler = pc->in_handler = apr_pstrdup(r->pool, r->handler
                                                       ? r->handler : "");
    apr_table_setn(r->notes, "processing-sent", "0");   /* until it arms */
    apr_pool_cleanup_register(r->pool, r, proc_request_cleanup,
                              apr_pool_cleanup_null);
    ap_add_input_filter_handle(proc_body_filter_handle, pc, r, r->connection);
    return DECLINED;
}

/* The decision (DESIGN.md, "Who receives the 102"), cheapest test first. */

/* Whether a response was started for r or a request before it in its
 * redirect chain (an ErrorDocument after partial output). */
static int proc_response_started(const request_rec *r)
{
    for (; r; r = r->prev) {
        if (r->sent_bodyct || r->eos_sent || r->bytes_sent) {
            return 1;
        }
    }
    return 0;
}

/* An env variable of r (SetEnvIf, BrowserMatch): most requests have
 * none, and an empty table answers without a lookup. */
static const char *proc_env_get(request_rec *r, const char *name)
{
    return apr_is_empty_table(r->subprocess_env)
           ? NULL : apr_table_get(r->subprocess_env, name);
}

/* Why r must never get a 102, or NULL if it may. */
static const char *proc_ineligible(request_rec *r)
{
    if (r->main) {
        return "subrequest";
    }
    if (r->connection->master) {
        return "HTTP/2 stream";
    }
    if (r->proto_num < HTTP_VERSION(1, 1)) {
        return "HTTP/1.0 client";
    }
    if (r->method_number == M_CONNECT) {
        return "CONNECT";
    }
    if (apr_table_get(r->headers_in, "Upgrade")) {
        return "Upgrade request";
    }
    if (proc_env_get(r, "no-processing")) {
        return "no-processing set";
    }
    if (proc_response_started(r)) {
        return "response already started";
    }
    if (proc_tls_not_ours(r)) {
        return "TLS not served by mod_ssl";
    }
    return NULL;
}

/* Whether Prefer (RFC 7240; httpd joins repeated headers with commas)
 * carries "processing", with or without value or parameters, any case. */
static int proc_prefers_processing(const char *v)
{
    while (v && *v) {
        const char *token;
        int quoted = 0;

        while (*v == ',' || *v == ' ' || *v == '\t') {
            v++;
        }
        token = v;
        while (*v && !strchr(",;= \t", *v)) {
            v++;
        }
        if (v - token == 10 && !ap_cstr_casecmpn(token, "processing", 10)) {
            return 1;
        }
        /* Skip this preference's value and parameters, quotes and all. */
        for (; *v && (quoted || *v != ','); v++) {
            if (*v == '"') {
                quoted = !quoted;
            }
            else if (*v == '\\' && quoted && v[1]) {
                v++;
            }
        }
    }
    return 0;
}

/* Whether the User-Agent ua belongs to the known family k; a browser's
 * request must also carry Sec-Fetch-Mode (sec_fetch). */
static int proc_family_matches(const char *ua, int sec_fetch,
                               const proc_known_client *k)
{
    if (strncmp(ua, k->prefix, k->prefix_len)) {
        return 0;
    }
    if ((k->flags & PROC_EXACT) ? ua[k->prefix_len] != '\0'
                                : k->contains && !strstr(ua, k->contains)) {
        return 0;
    }
    return !(k->flags & PROC_BROWSER) || sec_fetch;
}

/* The known client family of the User-Agent ua, or NULL. */
static const proc_known_client *proc_known_family(const char *ua,
                                                  int sec_fetch)
{
    const proc_known_client *k;

    if (!ua) {
        return NULL;
    }
    for (k = proc_known_clients; k->name; k++) {
        if (proc_family_matches(ua, sec_fetch, k)) {
            return k;
        }
    }
    return NULL;
}

/* Whether mod_proxy handles r: it forwards the backend's 1xx too. */
static int proc_proxy_handler(const request_rec *r)
{
    return r->proxyreq != PROXYREQ_NONE
           || (r->handler && (!strcmp(r->handler, "proxy-server")
                              || !strncmp(r->handler, "proxy:", 6)));
}

/* Whether name is a request header that intermediaries (fronts) add. */
static int proc_is_front_header(const char *name)
{
    switch (apr_tolower(*name)) {
    case 'c':
        return !ap_cstr_casecmp(name, "CDN-Loop");
    case 'f':
        return !ap_cstr_casecmp(name, "Forwarded");
    case 'v':
        return !ap_cstr_casecmp(name, "Via");
    case 'x':
        return !ap_cstr_casecmpn(name, "X-Forwarded-", 12)
               || !ap_cstr_casecmp(name, "X-Real-IP")
               || !ap_cstr_casecmp(name, "X-Varnish");
    }
    return 0;
}

/* Reads what the decision needs of r's headers in one pass: a lookup per
 * header name would cost more than the rest of the decision.  (httpd
 * joins repeated request headers, so each name appears once.) */
static void proc_read_headers(request_rec *r, proc_verdict *v)
{
    const apr_array_header_t *arr = apr_table_elts(r->headers_in);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    int i;

    /* mod_remoteip took the client address from a front's header */
    v->behind_front = strcmp(r->useragent_ip, r->connection->client_ip) != 0;
    for (i = 0; i < arr->nelts; i++) {
        const char *name = e[i].key;

        switch (apr_tolower(*name)) {
        case 'e':
            if (!ap_cstr_casecmp(name, "Expect")) {
                v->expects_continue = !ap_cstr_casecmp(e[i].val,
                                                       "100-continue");
            }
            break;
        case 'p':
            if (!ap_cstr_casecmp(name, "Prefer")) {
                v->prefer = e[i].val;
            }
            break;
        case 's':
            v->sec_fetch |= !ap_cstr_casecmp(name, "Sec-Fetch-Mode");
            break;
        case 'u':
            if (!ap_cstr_casecmp(name, "User-Agent")) {
                v->user_agent = e[i].val;
            }
            break;
        default:
            v->behind_front |= proc_is_front_header(name);
        }
    }
}

/* Entries of a comma-separated header list (0 if absent). */
static int proc_list_len(const char *v)
{
    int n = v && *v ? 1 : 0;

    for (; v && *v; v++) {
        n += *v == ',';
    }
    return n;
}

/* Whether every front r came through was Apache's mod_proxy_http, which
 * passes 1xx on: each adds an entry to X-Forwarded-For and -Server
 * (ProxyAddHeaders), and none adds other fronts' headers. */
static int proc_front_is_mod_proxy(request_rec *r)
{
    const char *servers = apr_table_get(r->headers_in, "X-Forwarded-Server");

    return servers
           && !strcmp(r->useragent_ip, r->connection->client_ip)
           && proc_list_len(servers)
              == proc_list_len(apr_table_get(r->headers_in,
                                             "X-Forwarded-For"))
           && !apr_table_get(r->headers_in, "Via")
           && !apr_table_get(r->headers_in, "Forwarded")
           && !apr_table_get(r->headers_in, "X-Real-IP")
           && !apr_table_get(r->headers_in, "CDN-Loop");
}

/* Whether the peer is a front declared with ProcessingTrustedProxy. */
static int proc_front_declared(request_rec *r, const proc_dir_cfg *cfg)
{
    apr_ipsubnet_t **fronts;
    int i;

    if (!cfg->fronts) {
        return 0;
    }
    fronts = (apr_ipsubnet_t **)cfg->fronts->elts;
    for (i = 0; i < cfg->fronts->nelts; i++) {
        if (apr_ipsubnet_test(fronts[i], r->connection->client_addr)) {
            return 1;
        }
    }
    return 0;
}

/* Why the front r came through would not carry 102s on, or NULL: Varnish
 * turns a backend's 1xx into a 503, Traffic Server passes the first 102
 * and then never the final response; others pass if declared or known. */
static const char *proc_front_refused(request_rec *r, const proc_dir_cfg *cfg,
                                      const proc_verdict *v)
{
    const char *via = apr_table_get(r->headers_in, "Via");

    if (apr_table_get(r->headers_in, "X-Varnish")) {
        return "behind Varnish, which fails a request on a backend's 1xx";
    }
    if (via && strstr(via, "ApacheTrafficServer/")) {
        return "behind Traffic Server, which stalls after a backend's 102";
    }
    if (v->front_cap || proc_front_declared(r, cfg)) {
        return NULL;
    }
    return "behind a front not known to pass 102s on "
           "(ProcessingTrustedProxy declares one)";
}

/* Why the client may not get 102s under the ProcessingClients policy, or
 * NULL: it asks (Prefer), or its family takes them in this flow. */
static const char *proc_client_refused(request_rec *r, int policy,
                                       const proc_verdict *v)
{
    if (v->prefers) {
        return NULL;
    }
    if (policy == PROC_CLIENTS_PREFER) {
        return "no 'Prefer: processing' (ProcessingClients prefer)";
    }
    if (!v->family) {
        return "client not known to handle 102 (ProcessingClients known)";
    }
    if (v->expects_continue && !(v->family->flags & PROC_EXPECT)) {
        return "client not known to handle 102 after 100 Continue";
    }
    return NULL;
}

/* The 1xx budget: a cap is on every 1xx the client or front sees, a 100
 * Continue too.  Behind a front or under mod_proxy others may add 1xx we
 * cannot count: then none for a capped client. */
static const char *proc_budget_refused(request_rec *r, proc_verdict *v)
{
    int cap = v->family ? v->family->cap : 0;

    if (cap && (v->behind_front || proc_proxy_handler(r))) {
        return "capped client behind a front or proxy: the 1xx it sees "
               "cannot be counted";
    }
    if (v->front_cap && (!cap || v->front_cap < cap)) {
        cap = v->front_cap;
    }
    if (!cap) {
        return NULL;
    }
    v->cap = cap - (v->expects_continue ? 1 : 0);
    return v->cap < 1 ? "the 1xx cap is reached already" : NULL;
}

/* The one decision: whether r may get 102s, filling in v, or why not. */
static const char *proc_refused(request_rec *r, const proc_dir_cfg *cfg,
                                proc_verdict *v)
{
    int policy = cfg->clients == UNSET ? PROC_CLIENTS_KNOWN : cfg->clients;
    const char *why = proc_ineligible(r);
    int forced;

    memset(v, 0, sizeof(*v));
    if (why || policy == PROC_CLIENTS_ALL) {
        return why;     /* "all": no client, front or cap test */
    }
    proc_read_headers(r, v);
    v->prefers = proc_prefers_processing(v->prefer);
    v->family = proc_known_family(v->user_agent, v->sec_fetch);
    /* force-processing: the administrator's decision, no client or front
     * test; the family's 1xx budget still holds. */
    forced = policy == PROC_CLIENTS_KNOWN
             && proc_env_get(r, "force-processing");
    if (!forced && (why = proc_client_refused(r, policy, v))) {
        return why;
    }
    if (v->behind_front) {
        v->front_cap = proc_front_is_mod_proxy(r) ? PROC_MOD_PROXY_CAP : 0;
        if (!forced && (why = proc_front_refused(r, cfg, v))) {
            return why;
        }
    }
    return proc_budget_refused(r, v);
}

/* Input filter above HTTP_IN: arms at the body's EOS, but only while r's
 * handler runs.  httpd also reads after the handler returned, to discard
 * an unread body (HTTP_IN makes up an EOS for an unanswered 100-continue),
 * even with r->status 200: r->handler tells, since ap_invoke_handler()
 * puts back the pointer proc_handler replaced with its copy. */
static apr_status_t proc_body_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                     ap_input_mode_t mode,
                                     apr_read_type_e block,
                                     apr_off_t readbytes)
{
    apr_status_t rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    request_rec *r = f->r;
    proc_conn *pc = f->ctx;
    apr_bucket *e;

    if (rv != APR_SUCCESS || mode == AP_MODE_SPECULATIVE) {
        return rv;
    }
    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        if (!APR_BUCKET_IS_EOS(e)) {
            continue;
        }
        ap_remove_input_filter(f);
        /* After an internal redirect f->r is the new request: no arm. */
        if (pc->r == r && r->handler == pc->in_handler && !pc->armed
            && ap_is_HTTP_SUCCESS(r->status) && !proc_response_started(r)) {
            proc_arm(r, pc, ap_get_module_config(r->per_dir_config,
                                                 &processing_module),
                     apr_time_now());
        }
        break;
    }
    return rv;
}

/* What the watchdog needs to duplicate the socket at the first 102: its
 * number and addresses, which the socket holds already.  Its own peer, not
 * c->client_addr, which mod_remoteip's PROXY protocol support replaces. */
static void proc_copy_addr(proc_addr *to, apr_socket_t *sock,
                           apr_interface_e which)
{
    apr_sockaddr_t *from = NULL;

    if (apr_socket_addr_get(&from, which, sock) == APR_SUCCESS
        && (apr_size_t)from->salen <= sizeof(to->u)) {
        memcpy(&to->u, &from->sa, from->salen);
        to->len = from->salen;
    }
    else {
        to->u.sa.sa_family = AF_UNSPEC;     /* matches no socket: no 102 */
        to->len = 0;
    }
}

static void proc_copy_socket(proc_conn *pc)
{
    apr_socket_t *sock = ap_get_conn_socket(pc->c);

    if (apr_os_sock_get(&pc->conn_fd, sock) != APR_SUCCESS) {
        pc->conn_fd = -1;
    }
    proc_copy_addr(&pc->local, sock, APR_LOCAL);
    proc_copy_addr(&pc->peer, sock, APR_REMOTE);
}

/* An earlier response may still sit in the core output filter (pipelining)
 * or in mod_ssl's buffers: flush it in the worker, before any 102. */
static void proc_flush_connection(request_rec *r, proc_conn *pc)
{
    conn_rec *c = r->connection;
    apr_bucket_brigade *bb;

    if (!pc->ssl && !c->data_in_output_filters) {
        return;
    }
    bb = apr_brigade_create(r->pool, c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(c->bucket_alloc));
    ap_pass_brigade(c->output_filters, bb);
    apr_brigade_destroy(bb);
}

/* The gates go in at the connection's first arm and stay: a connection
 * that never arms has no filter of ours.  Passing r relinks its chain. */
static void proc_add_gates(request_rec *r, proc_conn *pc)
{
    if (pc->gates_added) {
        return;
    }
    ap_add_output_filter_handle(proc_gate_out_handle, pc, r, r->connection);
    if (pc->ssl) {
        ap_add_input_filter_handle(proc_gate_in_handle, pc, r,
                                   r->connection);
    }
    pc->gates_added = 1;
}

/* The watchdog names the request by a copy of its log id, made only if r
 * logs this module at debug level. */
static void proc_copy_log_id(request_rec *r, proc_conn *pc)
{
    pc->log_debug = APLOG_R_IS_LEVEL(r, APLOG_DEBUG);
    if (!pc->log_debug) {
        memcpy(pc->log_id, "-", sizeof("-"));
        return;
    }
    if (!r->log_id) {
        ap_run_generate_log_id(r->connection, r, &r->log_id);
    }
    apr_cpystrn(pc->log_id, r->log_id ? r->log_id : "-",
                sizeof(pc->log_id));
}

/* ProcessingMaxCount, lowered (never raised) by the client's 1xx budget
 * and by the env var processing-max-count=N (1..1000). */
static int proc_request_max_count(request_rec *r, const proc_dir_cfg *cfg,
                                  int client_cap)
{
    int max = cfg->max_count == UNSET ? PROC_DEFAULT_MAX_COUNT
                                      : cfg->max_count;
    const char *cap = proc_env_get(r, "processing-max-count");

    if (client_cap && (max == 0 || client_cap < max)) {
        max = client_cap;
    }
    if (cap) {
        char *end;
        long n = strtol(cap, &end, 10);
        if (end == cap || *end || n < 1 || n > PROC_MAX_COUNT_LIMIT) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "ignoring "
                          "processing-max-count '%s' (allowed 1 to %d)",
                          cap, PROC_MAX_COUNT_LIMIT);
        }
        else if (max == 0 || n < max) {
            max = (int)n;
        }
    }
    return max;
}

/* The request is fully received and its handler runs: start the clock
 * from `start`.  Only the watchdog's state can still refuse. */
static void proc_arm(request_rec *r, proc_conn *pc, const proc_dir_cfg *cfg,
                     apr_time_t start)
{
    apr_interval_time_t interval = cfg->interval == UNSET
                                   ? PROC_DEFAULT_INTERVAL : cfg->interval;
    apr_interval_time_t delay = cfg->delay == UNSET ? interval : cfg->delay;
    apr_interval_time_t max_time = cfg->max_time == UNSET ? 0
                                                          : cfg->max_time;
    apr_time_t due = start + delay;
    apr_status_t rv = APR_SUCCESS;
    const char *failed = NULL;
    int level = APLOG_ERR;
    apr_uint32_t state;
    int woke = 0;

    proc_flush_connection(r, pc);
    proc_add_gates(r, pc);
    if (!pc->socket_copied) {
        /* the same for every request on the connection */
        proc_copy_socket(pc);
        pc->socket_copied = 1;
    }
    pc->interval = interval;
    pc->max_count = proc_request_max_count(r, cfg, pc->client_cap);
    pc->s = r->server;
    pc->conn_id = r->connection->id;
    proc_copy_log_id(r, pc);

    proc_lock();
    pc->sent = 0;
    pc->dead = 0;
    pc->lost = 0;
    pc->paused = 0;
    pc->arm_seq++;
    pc->pending_len = pc->pending_off = 0;
    pc->due = due;
    pc->stop_at = max_time ? start + max_time : PROC_NEVER;
    if ((state = proc_wd_state()) == PROC_WD_READY) {
        rv = proc_wd_start();
        state = proc_wd_state();
    }
    if (rv != APR_SUCCESS) {
        failed = "cannot start the watchdog thread";    /* once: FAILED */
    }
    else if (state != PROC_WD_RUNNING) {
        failed = state == PROC_WD_FAILED ? "no watchdog thread in this child"
                                         : "the child is stopping";
        level = APLOG_DEBUG;
    }
    else if (!proc_heap_push(pc)) {
        failed = "out of memory";
    }
    else {
        pc->armed = 1;
        proc_wd.armed_here++;
        if (due > proc_wd.horizon) {
            proc_wd.horizon = due;
        }
        /* Wake the watchdog only if it sleeps toward a later time (on the
         * grid, 0 while awake, or PROC_NEVER): a fast request costs no
         * context switch. */
        if (due + PROC_WAKE_GRID <= proc_wd.sleep_until) {
            proc_wd_wake();
            woke = 1;
        }
    }
    proc_unlock();

    if (failed) {
        ap_log_rerror(APLOG_MARK, level, rv, r, "not armed: %s", failed);
        return;
    }
    apr_atomic_inc32(&proc_counters->armed_now);
    apr_atomic_inc32(&proc_counters->armed_total);
    if (pc->log_debug) {
        apr_time_t now = apr_time_now();
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "armed: first 102 "
                      "in %" APR_TIME_T_FMT "ms, then every %" APR_TIME_T_FMT
                      "ms, at most %d (0: no limit), request %s%s",
                      apr_time_as_msec(due > now ? due - now : 0),
                      apr_time_as_msec(interval), pc->max_count,
                      pc->log_id, woke ? " (watchdog woken)" : "");
    }
}

/* Writes the rest of a 102 the watchdog could not finish, blocking (with
 * the connection's Timeout) in the worker, before any other byte. */
static void proc_write_remainder(proc_conn *pc, const unsigned char *buf,
                                 apr_size_t len)
{
    apr_socket_t *sock = ap_get_conn_socket(pc->c);

    while (len > 0) {
        apr_size_t n = len;
        apr_status_t rv = apr_socket_send(sock, (const char *)buf, &n);
        buf += n;
        len -= n;
        if (rv != APR_SUCCESS) {
            ap_log_cerror(APLOG_MARK, APLOG_TRACE1, rv, pc->c,
                          "cannot complete a 102 Processing");
            return;
        }
    }
    apr_atomic_inc32(&proc_counters->sent_total);
}

/* Lock held, pc out of the heap: the unsent part of a 102, for the caller
 * to write once the lock is released (the watchdog looks at it again only
 * after the next arm). */
static apr_size_t proc_take_remainder(proc_conn *pc,
                                      const unsigned char **rest)
{
    apr_size_t len = pc->pending_len - pc->pending_off;

    *rest = pc->pending + pc->pending_off;
    pc->pending_len = pc->pending_off = 0;
    return len;
}

/* A TLS record the watchdog could not keep: the stream is out of step. */
static apr_status_t proc_abort_connection(proc_conn *pc)
{
    ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, pc->c, "a 102 Processing TLS "
                  "record could not be kept; closing the connection");
    pc->c->aborted = 1;
    pc->c->keepalive = AP_CONN_CLOSE;
    return APR_ECONNABORTED;
}

/* Stops 102s for the current request: from the gates, and as safety nets
 * from the request's and the connection's pool cleanups.  Once pc->armed
 * is 0 under the lock the watchdog never touches pc again.  Returns
 * whether a TLS record was lost (the caller closes the connection). */
static int proc_disarm(proc_conn *pc, const char *why)
{
    const unsigned char *rest;
    apr_size_t rest_len;
    int sent, lost;
    request_rec *r;

    if (proc_wd_state() == PROC_WD_GONE) {
        pc->armed = 0;      /* the watchdog is gone or never runs again */
        return 0;
    }
    proc_lock();
    pc->armed = 0;
    pc->paused = 0;
    proc_heap_remove(pc);
    proc_close_fd(pc);
    rest_len = proc_take_remainder(pc, &rest);
    sent = pc->sent;
    lost = pc->lost;
    proc_wd.armed_here--;
    proc_unlock();

    apr_atomic_dec32(&proc_counters->armed_now);
    if (rest_len > 0) {
        proc_write_remainder(pc, rest, rest_len);
        sent++;
    }
    if (pc->r) {
        /* %{processing-sent}n, on every request of the redirect chain. */
        const char *val = sent ? apr_itoa(pc->r->pool, sent) : "0";
        for (r = pc->r; r; r = r->next) {
            apr_table_setn(r->notes, "processing-sent", val);
        }
        if (pc->log_debug) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, pc->r,
                          "disarmed (%s) after %d 102 Processing, "
                          "request %s", why, sent, pc->log_id);
        }
        pc->r = NULL;       /* its response has started */
    }
    return lost;
}

/* The output gate, a connection filter above mod_ssl's that every byte
 * the worker writes crosses.  Armed: disarm first.  Not armed: one test. */
static apr_status_t proc_gate_out(ap_filter_t *f, apr_bucket_brigade *bb)
{
    proc_conn *pc = f->ctx;

    if (pc->armed && proc_disarm(pc, "response started")) {
        return proc_abort_connection(pc);
    }
    return ap_pass_brigade(f->next, bb);
}

/* For a request waiting for its body (it may end unarmed).  Its pool can
 * outlive the next request's start (pipelining): only pc->r lets go. */
static apr_status_t proc_request_cleanup(void *data)
{
    request_rec *r = data;
    proc_conn *pc = ap_get_module_config(r->connection->conn_config,
                                         &processing_module);

    if (pc->r == r) {
        pc->r = NULL;       /* going away: no note, no log */
        if (pc->armed) {
            proc_disarm(pc, "request ended");
        }
    }
    return APR_SUCCESS;
}

/* The record leaves the heap before its memory goes, with its descriptor
 * and heap buffer: the net under the gate (e.g. a child exiting in the
 * middle of a handler). */
static apr_status_t proc_conn_cleanup(void *data)
{
    proc_conn *pc = data;

    pc->r = NULL;           /* its pool is gone already */
    if (pc->armed) {
        proc_disarm(pc, "connection closed");
    }
    /* proc_wd_shut closed the duplicates, unless it had no lock. */
    if (proc_wd_state() == PROC_WD_GONE && pc->fd >= 0) {
        proc_sys_close(pc->fd);
        pc->fd = -1;
    }
    if (pc->pending != pc->inline_buf) {
        free(pc->pending);
        pc->pending = pc->inline_buf;
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* TLS (mod_ssl)                                                      */
/*
 * The watchdog encrypts each 102 with the connection's SSL and a private
 * memory BIO (the header comment; DESIGN.md).  Functions marked "Watchdog"
 * run on its thread with the lock held; the rest on the worker.
 */

/* mod_ssl tells us each TLS connection's SSL (never for proxy backends). */
static int proc_ssl_pre_handshake(conn_rec *c, SSL *ssl, int is_proxy)
{
#ifdef PROC_HAS_OUTGOING
    if (c->outgoing) {
        return DECLINED;
    }
#endif
    if (!is_proxy) {
        proc_conn_get(c)->ssl = ssl;
    }
    return DECLINED;
}

/* Whether r's connection is TLS but not mod_ssl's (mod_tls, mod_gnutls):
 * clear bytes would break it.  Said at INFO once per child. */
static int proc_tls_not_ours(request_rec *r)
{
#ifdef PROC_HAS_SSL_CONN_IS_SSL
    proc_conn *pc = ap_get_module_config(r->connection->conn_config,
                                         &processing_module);

    if ((pc && pc->ssl) || !ap_ssl_conn_is_ssl(r->connection)) {
        return 0;
    }
    if (apr_atomic_cas32(&proc_tls_refusal_logged, 1, 0) == 0) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "no 102 Processing on "
                      "TLS connections not served by mod_ssl (said once "
                      "per child)");
    }
    return 1;
#else
    return 0;
#endif
}

/* Watchdog: whether SSL_write would send only application data, not
 * handshake messages OpenSSL owes the peer (renegotiation, post-handshake
 * authentication, a KeyUpdate), which would run mod_ssl's callbacks. */
static int proc_tls_idle(SSL *ssl)
{
    return SSL_get_shutdown(ssl) == 0 && !SSL_in_init(ssl)
#ifdef SSL_KEY_UPDATE_NONE
           && SSL_get_key_update_type(ssl) == SSL_KEY_UPDATE_NONE
#endif
           ;
}

/* Watchdog: moves every byte SSL_write produced into pc->pending; OpenSSL
 * has counted the record, so none may be dropped. */
static int proc_tls_keep_record(proc_conn *pc)
{
    apr_size_t len = (apr_size_t)BIO_ctrl_pending(proc_wd.tls_out);
    int out;

    if (!proc_wd_reserve(pc, len)) {
        return 0;
    }
    while (len > 0) {
        out = BIO_read(proc_wd.tls_out, pc->pending + pc->pending_len,
                       (int)len);
        if (out <= 0) {
            return 0;
        }
        pc->pending_len += out;
        len -= out;
    }
    return 1;
}

/* Watchdog: appends data to pc->pending as one TLS record.  On failure it
 * is lost: the worker closes the connection (the gates, the pause). */
static int proc_tls_encode(proc_conn *pc, const char *data, apr_size_t len)
{
    BIO *saved = SSL_get_wbio(pc->ssl);
    int n;

    /* Each SSL_set0_wbio() drops a reference: one more on each BIO. */
    BIO_up_ref(saved);
    BIO_up_ref(proc_wd.tls_out);
    SSL_set0_wbio(pc->ssl, proc_wd.tls_out);
    n = SSL_write(pc->ssl, data, (int)len);
    SSL_set0_wbio(pc->ssl, saved);

    if (n != (int)len || !proc_tls_keep_record(pc)) {
        ERR_clear_error();
        (void)BIO_reset(proc_wd.tls_out);
        pc->pending_len = pc->pending_off = 0;
        pc->lost = 1;
        return 0;
    }
    return 1;
}

/* The input gate: no SSL_read beside the watchdog's SSL_write.  A paused
 * record is out of its reach: mod_ssl may read (a renegotiation in a
 * subrequest) and the request keeps its 102s. */
static apr_status_t proc_gate_in(ap_filter_t *f, apr_bucket_brigade *bb,
                                 ap_input_mode_t mode,
                                 apr_read_type_e block, apr_off_t readbytes)
{
    proc_conn *pc = f->ctx;

    if (pc->armed && !pc->paused && proc_disarm(pc, "connection read")) {
        return proc_abort_connection(pc);
    }
    return ap_get_brigade(f->next, bb, mode, block, readbytes);
}

/* Takes an armed record out of the watchdog's reach while a subrequest or
 * redirect runs its phases, where mod_ssl's hooks may use the SSL below
 * the gates; an unsent part of a 102 goes out first, as at the gate. */
static void proc_pause(proc_conn *pc)
{
    const unsigned char *rest = NULL;
    apr_size_t rest_len = 0;
    int lost = 0;

    proc_lock();
    if (pc->armed && pc->paused++ == 0) {
        proc_heap_remove(pc);
        rest_len = proc_take_remainder(pc, &rest);
        if (rest_len > 0) {
            pc->sent++;
        }
        lost = pc->lost;
    }
    proc_unlock();
    if (rest_len > 0) {
        proc_write_remainder(pc, rest, rest_len);
    }
    if (lost) {
        /* mod_ssl must not go on with a stream out of step. */
        proc_abort_connection(pc);
    }
}

/* The pausing request is past its phases (or gone): back to the watchdog
 * when no other pause holds it, schedule unchanged. */
static void proc_resume(proc_pause_mark *mark)
{
    proc_conn *pc = mark->pc;

    mark->pc = NULL;
    proc_lock();
    if (pc->armed && pc->arm_seq == mark->arm_seq && pc->paused > 0
        && --pc->paused == 0 && !pc->dead
        && proc_wd_state() == PROC_WD_RUNNING) {
        if (proc_heap_push(pc)
            && pc->due + PROC_WAKE_GRID <= proc_wd.sleep_until) {
            proc_wd_wake();
        }
    }
    proc_unlock();
}

static apr_status_t proc_pause_cleanup(void *data)
{
    proc_pause_mark *mark = data;

    if (mark->pc && proc_wd_state() != PROC_WD_GONE) {
        proc_resume(mark);
    }
    return APR_SUCCESS;
}

/* A subrequest or redirect r is made, before any of its phases: it pauses
 * its connection's armed TLS record.  Lookups may never run a handler, so
 * the pause ends with the last phase (fixups) or the request's pool. */
static int proc_create_request(request_rec *r)
{
    proc_conn *pc;
    proc_pause_mark *mark;

    if (!r->main && !r->prev) {
        return OK;
    }
    pc = ap_get_module_config(r->connection->conn_config, &processing_module);
    if (!pc || !pc->ssl || !pc->armed || proc_wd_state() == PROC_WD_GONE) {
        return OK;
    }
    mark = apr_palloc(r->pool, sizeof(*mark));
    mark->pc = pc;
    proc_pause(pc);
    mark->arm_seq = pc->arm_seq;
    ap_set_module_config(r->request_config, &processing_module, mark);
    apr_pool_cleanup_register(r->pool, mark, proc_pause_cleanup,
                              apr_pool_cleanup_null);
    return OK;
}

/* Last of the fixups, the last phase: done with mod_ssl's hooks. */
static int proc_fixups(request_rec *r)
{
    proc_pause_mark *mark = ap_get_module_config(r->request_config,
                                                 &processing_module);

    if (mark && mark->pc) {
        proc_resume(mark);
    }
    return DECLINED;
}

/* ------------------------------------------------------------------ */
/* Configuration                                                      */

static void *proc_create_dir_cfg(apr_pool_t *p, char *dir)
{
    proc_dir_cfg *cfg = apr_palloc(p, sizeof(*cfg));

    cfg->enabled = UNSET;
    cfg->interval = UNSET;
    cfg->delay = UNSET;
    cfg->max_count = UNSET;
    cfg->max_time = UNSET;
    cfg->clients = UNSET;
    cfg->fronts = NULL;
    cfg->configured = 0;
    return cfg;
}

/* httpd merges sections on every request: when one side sets nothing of
 * ours, the result is the other side as it is (never written to). */
static void *proc_merge_dir_cfg(apr_pool_t *p, void *basev, void *addv)
{
    const proc_dir_cfg *base = basev, *add = addv;
    proc_dir_cfg *cfg;

    if (!add->configured) {
        return basev;
    }
    if (!base->configured) {
        return addv;
    }
    cfg = apr_palloc(p, sizeof(*cfg));
#define PROC_MERGE(f) cfg->f = add->f != UNSET ? add->f : base->f
    cfg->configured = 1;
    PROC_MERGE(enabled);
    PROC_MERGE(interval);
    PROC_MERGE(delay);
    PROC_MERGE(max_count);
    PROC_MERGE(max_time);
    PROC_MERGE(clients);
    cfg->fronts = add->fronts ? add->fronts : base->fronts;
    return cfg;
#undef PROC_MERGE
}

/* Parses a duration the way httpd does (ap_timeout_parameter_parse: plain
 * seconds, or ms, s, mi, h) but strictly: httpd's parser ignores anything
 * after the unit's first letters, which would let "5sx" or "2mix" pass. */
static const char *proc_parse_duration(cmd_parms *cmd, const char *arg,
                                       apr_interval_time_t min,
                                       apr_interval_time_t max,
                                       const char *range,
                                       apr_interval_time_t *out)
{
    const char *unit = arg;
    apr_interval_time_t v;

    while (apr_isdigit(*unit)) {
        unit++;
    }
    if (unit == arg
        || (*unit && strcmp(unit, "s") && strcmp(unit, "ms")
            && strcmp(unit, "mi") && strcmp(unit, "min")
            && strcmp(unit, "h"))
        || ap_timeout_parameter_parse(arg, &v, "s") != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a valid duration "
                            "(a whole number with optional unit ms, s, mi "
                            "or h; allowed %s)", cmd->cmd->name, arg, range);
    }
    if (v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' is out of range "
                            "(allowed %s)", cmd->cmd->name, arg, range);
    }
    *out = v;
    return NULL;
}

/* After any directive: the record now sets something of ours. */
static const char *proc_cfg_changed(void *dcfg, const char *err)
{
    ((proc_dir_cfg *)dcfg)->configured = 1;
    return err;
}

static const char *proc_set_enabled(cmd_parms *cmd, void *dcfg, int flag)
{
#ifndef PROC_HAS_UNIX_IO
    if (flag) {
        return apr_psprintf(cmd->pool, "%s On: not available on this "
                            "platform (it needs fcntl(F_DUPFD_CLOEXEC), "
                            "send(MSG_DONTWAIT|MSG_NOSIGNAL) and POSIX "
                            "threads)", cmd->cmd->name);
    }
#endif
    ((proc_dir_cfg *)dcfg)->enabled = flag;
    return proc_cfg_changed(dcfg, NULL);
}

static const char *proc_set_clients(cmd_parms *cmd, void *dcfg,
                                    const char *arg)
{
    proc_dir_cfg *cfg = dcfg;

    if (!strcasecmp(arg, "known")) {
        cfg->clients = PROC_CLIENTS_KNOWN;
    }
    else if (!strcasecmp(arg, "prefer")) {
        cfg->clients = PROC_CLIENTS_PREFER;
    }
    else if (!strcasecmp(arg, "all")) {
        cfg->clients = PROC_CLIENTS_ALL;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is not allowed (known, "
                            "prefer or all)", cmd->cmd->name, arg);
    }
    return proc_cfg_changed(dcfg, NULL);
}

/* ProcessingTrustedProxy: the addresses (or CIDR ranges, as mod_remoteip's
 * RemoteIPTrustedProxy takes them) of fronts the administrator declares
 * to pass 102s on to their clients. */
static const char *proc_add_front(cmd_parms *cmd, void *dcfg, const char *arg)
{
    proc_dir_cfg *cfg = dcfg;
    char *addr = apr_pstrdup(cmd->pool, arg);
    char *mask = strchr(addr, '/');
    apr_ipsubnet_t **front;

    if (mask) {
        *mask++ = '\0';
    }
    if (!cfg->fronts) {
        cfg->fronts = apr_array_make(cmd->pool, 4, sizeof(*front));
    }
    front = apr_array_push(cfg->fronts);
    /* Addresses only: apr_ipsubnet_create() would also take host names'
     * look-alikes such as "10" (10.0.0.0/8), which read as a mistake. */
    if ((!apr_isdigit(*addr) && !strchr(addr, ':'))
        || (!mask && !strchr(addr, ':') && !strchr(addr, '.'))
        || apr_ipsubnet_create(front, addr, mask, cmd->pool)
           != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not allowed (an IP "
                            "address or address/prefix, e.g. 192.0.2.7, "
                            "10.0.0.0/8 or 2001:db8::/32)",
                            cmd->cmd->name, arg);
    }
    return proc_cfg_changed(dcfg, NULL);
}

static const char *proc_set_interval(cmd_parms *cmd, void *dcfg,
                                     const char *arg)
{
    return proc_cfg_changed(dcfg, proc_parse_duration(
        cmd, arg, PROC_MIN_INTERVAL, PROC_MAX_DURATION, "100ms to 1h",
        &((proc_dir_cfg *)dcfg)->interval));
}

static const char *proc_set_delay(cmd_parms *cmd, void *dcfg, const char *arg)
{
    return proc_cfg_changed(dcfg, proc_parse_duration(
        cmd, arg, 0, PROC_MAX_DURATION, "0 to 1h",
        &((proc_dir_cfg *)dcfg)->delay));
}

static const char *proc_set_max_time(cmd_parms *cmd, void *dcfg,
                                     const char *arg)
{
    return proc_cfg_changed(dcfg, proc_parse_duration(
        cmd, arg, 0, PROC_MAX_DURATION, "0 (no limit) to 1h",
        &((proc_dir_cfg *)dcfg)->max_time));
}

static const char *proc_set_max_count(cmd_parms *cmd, void *dcfg,
                                      const char *arg)
{
    const char *p;
    apr_int64_t v;

    for (p = arg; apr_isdigit(*p); p++) {
        /* digits only: no sign, no junk */
    }
    if (p == arg || *p || p - arg > 6
        || (v = apr_atoi64(arg)) > PROC_MAX_COUNT_LIMIT) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not allowed (a whole "
                            "number from 0 (no limit) to %d)",
                            cmd->cmd->name, arg, PROC_MAX_COUNT_LIMIT);
    }
    ((proc_dir_cfg *)dcfg)->max_count = (int)v;
    return proc_cfg_changed(dcfg, NULL);
}

/* ------------------------------------------------------------------ */
/* Counters and mod_status                                            */

/* Runs in the parent on every (re)load.  The segment is made once and kept
 * in the process pool under a userdata key, because the module itself is
 * unloaded and reloaded with each configuration generation. */
static int proc_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    static const char *key = "mod_processing_counters";
    apr_pool_t *pproc = s->process->pool;
    apr_shm_t *shm = NULL;
    apr_status_t rv;

    apr_pool_userdata_get((void **)&shm, key, pproc);
    if (!shm) {
        rv = apr_shm_create(&shm, sizeof(proc_stats), NULL, pproc);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         "no shared memory for the status counters; "
                         "/server-status shows one child's figures only");
            return OK;
        }
        memset(apr_shm_baseaddr_get(shm), 0, sizeof(proc_stats));
        apr_pool_userdata_set(shm, key, apr_pool_cleanup_null, pproc);
    }
    proc_counters = apr_shm_baseaddr_get(shm);
    return OK;
}

static int proc_status_hook(request_rec *r, int flags)
{
    apr_uint32_t now = apr_atomic_read32(&proc_counters->armed_now);
    apr_uint32_t total = apr_atomic_read32(&proc_counters->armed_total);
    apr_uint32_t sent = apr_atomic_read32(&proc_counters->sent_total);
    apr_uint32_t failed = apr_atomic_read32(&proc_counters->failed_total);

    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "ProcessingArmed: %u\nProcessingArmedTotal: %u\n"
                   "ProcessingSent: %u\nProcessingSendFailed: %u\n",
                   now, total, sent, failed);
        return OK;
    }
    ap_rprintf(r, "<hr />\n<h2>mod_processing (102 Processing)</h2>\n"
               "<table border=\"0\">\n"
               "<tr><th align=\"left\">Requests armed now</th>"
               "<td>%u</td></tr>\n"
               "<tr><th align=\"left\">Requests armed in total</th>"
               "<td>%u</td></tr>\n"
               "<tr><th align=\"left\">102 Processing sent</th>"
               "<td>%u</td></tr>\n"
               "<tr><th align=\"left\">Sends that failed</th>"
               "<td>%u</td></tr>\n</table>\n",
               now, total, sent, failed);
    return OK;
}

/* ------------------------------------------------------------------ */
/* Registration                                                       */

static void proc_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(proc_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(proc_child_init, NULL, NULL, APR_HOOK_MIDDLE);
#ifdef PROC_HAS_CHILD_STOPPING
    ap_hook_child_stopping(proc_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
#endif
    APR_OPTIONAL_HOOK(ap, status_hook, proc_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
    /* Before any other module's create_request: a subrequest or redirect
     * of an armed TLS request pauses it before anything else runs. */
    ap_hook_create_request(proc_create_request, NULL, NULL,
                           APR_HOOK_REALLY_FIRST);
    /* After mod_ssl's fixup, the last code of the request phases that
     * touches the connection's SSL. */
    ap_hook_fixups(proc_fixups, NULL, NULL, APR_HOOK_REALLY_LAST);
    /* First of all handlers, so that the clock covers whichever handler
     * then takes the request (mod_dav, cgi, proxy, lua, ...). */
    ap_hook_handler(proc_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
    APR_OPTIONAL_HOOK(ssl, pre_handshake, proc_ssl_pre_handshake,
                      NULL, NULL, APR_HOOK_MIDDLE);

    /* Above HTTP_IN (AP_FTYPE_PROTOCOL): sees the body's EOS. */
    proc_body_filter_handle =
        ap_register_input_filter("PROCESSING_BODY", proc_body_filter, NULL,
                                 AP_FTYPE_CONTENT_SET);
    /* AP_FTYPE_CONNECTION sits above mod_ssl's coalesce (+4) and TLS (+5)
     * filters and above CORE: every byte of the connection passes here. */
    proc_gate_out_handle =
        ap_register_output_filter("PROCESSING_GATE", proc_gate_out, NULL,
                                  AP_FTYPE_CONNECTION);
    proc_gate_in_handle =
        ap_register_input_filter("PROCESSING_GATE", proc_gate_in, NULL,
                                 AP_FTYPE_CONNECTION);
    /* Never added to a real chain: the shadow connection's only filter. */
    proc_writer_handle =
        ap_register_output_filter("PROCESSING_WRITER", proc_wd_writer, NULL,
                                  AP_FTYPE_NETWORK);
}

static const command_rec proc_cmds[] = {
    AP_INIT_FLAG("Processing", proc_set_enabled, NULL, OR_FILEINFO,
                 "On or Off: send 102 Processing while handlers run long "
                 "(default Off)"),
    AP_INIT_TAKE1("ProcessingClients", proc_set_clients, NULL, OR_FILEINFO,
                  "Which clients get 102s: known (default: those that ask "
                  "with Prefer, are allowed by force-processing, or belong "
                  "to a family known to handle them), prefer, or all"),
    AP_INIT_ITERATE("ProcessingTrustedProxy", proc_add_front, NULL,
                    RSRC_CONF,
                    "Addresses or address/prefix ranges of fronts (reverse "
                    "proxies, CDNs) that pass 102s on to their clients"),
    AP_INIT_TAKE1("ProcessingInterval", proc_set_interval, NULL, OR_FILEINFO,
                  "Time between 102 Processing responses, 100ms to 1h "
                  "(default 20s)"),
    AP_INIT_TAKE1("ProcessingDelay", proc_set_delay, NULL, OR_FILEINFO,
                  "Time from the end of the request to the first 102, "
                  "0 to 1h (default: the interval)"),
    AP_INIT_TAKE1("ProcessingMaxCount", proc_set_max_count, NULL,
                  OR_FILEINFO,
                  "Most 102 responses per request, 0 (no limit) to 1000 "
                  "(default 5)"),
    AP_INIT_TAKE1("ProcessingMaxTime", proc_set_max_time, NULL, OR_FILEINFO,
                  "Stop sending 102s after this long, 0 (no limit) to 1h "
                  "(default 0)"),
    {NULL}
};

AP_DECLARE_MODULE(processing) = {
    STANDARD20_MODULE_STUFF,
    proc_create_dir_cfg,        /* per-directory config creator */
    proc_merge_dir_cfg,         /* per-directory config merger */
    NULL,                       /* per-server config creator */
    NULL,                       /* per-server config merger */
    proc_cmds,                  /* command table */
    proc_register_hooks         /* hook registration */
};
