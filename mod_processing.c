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
 * mod_processing: send "HTTP/1.1 102 Processing" interim responses while a
 * handler runs for a long time, so that proxies, CDNs and clients do not
 * give up on a silent connection.
 *
 * Threads.  A worker thread runs the handler; one watchdog thread per child
 * sends the 102s.  The watchdog never touches memory the worker uses: it
 * works on the module's own per-connection record (under the lock), on
 * the bytes of a 102 that httpd formatted once at child start (on a shadow
 * request of the module's own), on the socket's file descriptor with a
 * non-blocking send(), and, for TLS, on the connection's SSL object with a
 * private memory BIO while the worker provably does no I/O on it.
 *
 * The gate.  Every byte the worker writes (and, for TLS, every read) passes
 * a connection filter that, when the record is armed, disarms it under the
 * lock and first writes any unsent remainder of a 102.  So no 102 can
 * follow or interleave with the final response.
 *
 * See README.md ("How it works") for the full story.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "mod_ssl.h"
#include "mod_status.h"

#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_thread_cond.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"
#include "apr_optional_hooks.h"
#include "apr_atomic.h"
#include "apr_shm.h"

#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <sys/socket.h>

/* The lock: a futex word on Linux, APR's mutex and condition elsewhere or
 * when built with -DPROC_APR_LOCK (see "The lock" below). */
#if defined(__linux__) && !defined(PROC_APR_LOCK)
#define PROC_FUTEX_LOCK 1
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

/* Race-detector builds (test/stress/run-racecheck) tell helgrind or drd
 * that the futex lock is a lock; in every other build these are empty. */
#if defined(PROC_RACECHECK_HELGRIND)
#include <valgrind/helgrind.h>
#define PROC_LOCK_CREATED(l)    VALGRIND_HG_DISABLE_CHECKING(l, sizeof(*(l))); \
                                VALGRIND_HG_MUTEX_INIT_POST(l, 0)
#define PROC_LOCK_ACQUIRING(l)  VALGRIND_HG_MUTEX_LOCK_PRE(l, 0)
#define PROC_LOCK_ACQUIRED(l)   VALGRIND_HG_MUTEX_LOCK_POST(l)
#define PROC_LOCK_RELEASING(l)  VALGRIND_HG_MUTEX_UNLOCK_PRE(l)
#define PROC_LOCK_RELEASED(l)   VALGRIND_HG_MUTEX_UNLOCK_POST(l)
#define PROC_IGNORE_WORD(w)     VALGRIND_HG_DISABLE_CHECKING(w, sizeof(*(w)))
#elif defined(PROC_RACECHECK_DRD)
#include <valgrind/drd.h>
#define PROC_LOCK_CREATED(l)    DRD_IGNORE_VAR(*(l)); ANNOTATE_RWLOCK_CREATE(l)
#define PROC_LOCK_ACQUIRING(l)
#define PROC_LOCK_ACQUIRED(l)   ANNOTATE_RWLOCK_ACQUIRED(l, 1)
#define PROC_LOCK_RELEASING(l)  ANNOTATE_RWLOCK_RELEASED(l, 1)
#define PROC_LOCK_RELEASED(l)
#define PROC_IGNORE_WORD(w)     DRD_IGNORE_VAR(*(w))
#else
#define PROC_LOCK_CREATED(l)
#define PROC_LOCK_ACQUIRING(l)
#define PROC_LOCK_ACQUIRED(l)
#define PROC_LOCK_RELEASING(l)
#define PROC_LOCK_RELEASED(l)
#define PROC_IGNORE_WORD(w)
#endif

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

module AP_MODULE_DECLARE_DATA processing_module;

/* mod_ssl's optional hook, declared here as in mod_ssl_openssl.h, which is
 * not installed by every distribution.  mod_ssl runs it for each new TLS
 * connection; without mod_ssl it is simply never called. */
APR_DECLARE_EXTERNAL_HOOK(ssl, SSL, int, pre_handshake,
                          (conn_rec *c, SSL *ssl, int is_proxy))

#define UNSET -1

#define PROC_DEFAULT_INTERVAL   apr_time_from_sec(20)
#define PROC_DEFAULT_MAX_COUNT  5
#define PROC_MIN_INTERVAL       apr_time_from_msec(100)
#define PROC_MAX_DURATION       apr_time_from_sec(3600)
#define PROC_MAX_COUNT_LIMIT    1000

/* The interim response as httpd formats it; used only if httpd's own
 * formatting could not be captured at child start (proc_format_interim). */
#define PROC_INTERIM_BYTES      "HTTP/1.1 102 Processing\r\n\r\n"
#define PROC_INTERIM_MAX        64

/* Room for one 102 as sent: 28 bytes in clear, or one TLS record around
 * them (at most ~120 bytes for TLS 1.2 CBC with SHA-384, ~50 for GCM and
 * TLS 1.3) plus, rarely, a TLS 1.3 KeyUpdate OpenSSL had queued (~30). */
#define PROC_PENDING_MAX        256
#define PROC_LOG_ID_MAX         32

/* The watchdog wakes on a 10 ms grid: a 102 goes out at most one slot
 * (10 ms) late.  Each wake-up also sends the repeat 102s (never a first
 * one: ProcessingDelay is a promise) due before the end of the slot it runs
 * in, at most 10 ms early, so that requests armed at spread-out times share
 * a wake-up every other slot: a wake-up costs the thread more than the
 * sends it makes (bench/floor.py). */
#define PROC_WAKE_GRID          apr_time_from_msec(10)

/* For the rare branch of code that runs on every pass of output (the
 * gate): kept out of line, the common branch stays a few instructions and
 * a tail call. */
#if defined(__GNUC__)
#define PROC_NOINLINE           __attribute__((noinline))
#else
#define PROC_NOINLINE
#endif

#define PROC_NOT_QUEUED         ((apr_size_t)-1)
#define PROC_NEVER              APR_INT64_MAX

/* Per-directory configuration; every field UNSET until configured. */
typedef struct {
    int enabled;                    /* Processing On|Off */
    apr_interval_time_t interval;   /* ProcessingInterval */
    apr_interval_time_t delay;      /* ProcessingDelay (default: interval) */
    int max_count;                  /* ProcessingMaxCount, 0 = no limit */
    apr_interval_time_t max_time;   /* ProcessingMaxTime, 0 = no limit */
    int require_prefer;             /* ProcessingRequirePrefer On|Off */
    int configured;                 /* any of the above set here */

    /* The values in effect (defaults filled in), kept current by every
     * setter and by the merge: arming reads them as they are. */
    apr_interval_time_t eff_interval;
    apr_interval_time_t eff_delay;
    int eff_max_count;
    apr_interval_time_t eff_max_time;
} proc_dir_cfg;

/* Counters for mod_status, summed over all children: one anonymous shared
 * memory segment made by the parent and kept in the process pool, so that
 * it survives restarts and old and new generations add to the same
 * figures.  Updated with atomics only. */
typedef struct {
    volatile apr_uint64_t armed_now;    /* requests armed at this moment */
    volatile apr_uint64_t armed_total;  /* requests ever armed */
    volatile apr_uint64_t sent_total;   /* complete 102s sent */
    volatile apr_uint64_t failed_total; /* sends that failed (client gone) */
} proc_stats;

/* Per-connection record, allocated once from c->pool on first need and
 * reused by every request on the connection (HTTP/1.1 runs one at a time).
 *
 * Ownership: fields marked [lock] are shared with the watchdog and only
 * touched with the lock held.  Fields marked [worker] belong to the worker
 * thread; the watchdog never reads them.  [arm] fields are written by the
 * worker before the record is queued (under the lock, which publishes them)
 * and only read afterwards. */
typedef struct proc_conn {
    int armed;                      /* [worker writes, under lock] 102s may
                                     * be sent; only the worker changes it */
    apr_size_t heap_idx;            /* [lock] index in the deadline heap */
    apr_time_t due;                 /* [lock] when the next 102 is due */
    int sent;                       /* [lock] complete 102s this request */
    int dead;                       /* [lock] a send failed: stop */
    apr_size_t pending_off;         /* [lock] bytes of pending[] written */
    apr_size_t pending_len;         /* [lock] bytes in pending[] */

    apr_os_sock_t fd;               /* [arm] the client socket */
    SSL *ssl;                       /* [arm] mod_ssl's SSL, NULL if plain */
    apr_interval_time_t interval;   /* [arm] effective settings */
    int max_count;                  /* [arm] 0 = no limit */
    apr_time_t stop_at;             /* [arm] no 102 due after this */
    server_rec *s;                  /* [arm] config memory, for logging */
    long conn_id;                   /* [arm] c->id, for logging */
    char log_id[PROC_LOG_ID_MAX];   /* [arm] copy of r->log_id */

    conn_rec *c;                    /* [worker] */
    request_rec *r;                 /* [worker] request armed or waiting */
    int gates_added;                /* [worker] gate filters installed */
    int note_set;                   /* [worker] r->notes has our note */
    int log_debug;                  /* [worker] r logs at debug level */

    /* Last: the only field a new record need not zero. */
    unsigned char pending[PROC_PENDING_MAX]; /* [lock] unsent 102 bytes */
} proc_conn;

/* A heap entry holds a copy of its record's due time, so that ordering the
 * heap reads only the array, not a record per comparison scattered over
 * the connections' pools (1,000 armed: ~10 levels, 20 comparisons per
 * 102; as record reads, perf showed them as the watchdog's largest
 * user-space cost, cache misses an instruction count does not show). */
typedef struct {
    apr_time_t due;                 /* == pc->due while queued */
    proc_conn *pc;
} proc_heap_entry;

/* The watchdog of this child process. */
typedef struct {
    int ready;                      /* set up at child start; else no 102s */
#ifdef PROC_FUTEX_LOCK
    int lock;                       /* guards the records and this struct:
                                     * 0 free, 1 held, 2 held and waited for */
    unsigned int wake_seq;          /* [lock] bumped to wake the thread */
#else
    apr_thread_mutex_t *mutex;      /* guards the records and this struct */
    apr_thread_cond_t *wakeup;      /* signalled to wake the thread */
#endif
    apr_thread_t *thread;
    int running;                    /* [lock] cleared to stop the thread */
    int closing;                    /* [lock] child exiting: no new start */
    int start_failed;               /* [lock] thread creation failed */
    int stopped;                    /* set once the child exits: records
                                     * are then released without the lock */
    apr_time_t sleep_until;         /* [lock] what the thread waits for */
    apr_time_t horizon;             /* [lock] latest due time ever armed */
    apr_uint64_t armed_here;        /* [lock] this child's share of the
                                     * shared armed_now counter */
    proc_heap_entry *heap;          /* [lock] min-heap on due time */
    apr_size_t heap_len;            /* [lock] */
    apr_size_t heap_cap;            /* [lock] */

    /* Set at child start, then only read: the bytes of every 102. */
    char interim[PROC_INTERIM_MAX];
    apr_size_t interim_len;

    /* Below: touched by the watchdog thread only. */
    apr_pool_t *pool;               /* own allocator: the thread's */
    BIO *tls_out;                   /* memory BIO for TLS records */
} proc_watchdog;

static proc_watchdog proc_wd;
/* Per-process fallback if the shared segment cannot be made. */
static proc_stats proc_local_counters;
static proc_stats *proc_counters = &proc_local_counters;
static ap_filter_rec_t *proc_body_filter_handle;
static ap_filter_rec_t *proc_gate_out_handle;
static ap_filter_rec_t *proc_gate_in_handle;
static ap_filter_rec_t *proc_capture_handle;

/* ------------------------------------------------------------------ */
/* The lock, and the watchdog's sleep                                 */
/*
 * One lock guards the deadline heap and the records' [lock] fields, and
 * every armed request takes it twice (arm, disarm).  With APR's mutex
 * those two holds cost ~145 instructions per request (apr_thread_mutex_*
 * around glibc's pthread_mutex_*, measured with callgrind: bench/), a
 * sixth of all the module adds to a small static request.  On Linux the
 * lock is therefore a futex word, the classic three-state mutex (Drepper,
 * "Futexes Are Tricky", mutex 2): one atomic instruction to take it and
 * one to release it when nobody waits; a thread that finds it held sleeps
 * in the kernel, as in a pthread mutex, never spins.  It is used exactly
 * like the mutex it replaces (same holders, same holds), and
 * -DPROC_APR_LOCK builds the APR version for comparison or other systems.
 *
 * The watchdog sleeps on a second futex word, a counter that whoever
 * wakes it bumps under the lock: it reads the counter under the lock
 * before releasing it, and FUTEX_WAIT returns at once if the counter has
 * moved since, so no wake-up is lost between the release and the wait.
 */

#ifdef PROC_FUTEX_LOCK

static long proc_futex(int *word, int op, int val,
                       const struct timespec *timeout)
{
    return syscall(SYS_futex, word, op, val, timeout, NULL, 0);
}

static int proc_lock_create(apr_pool_t *pchild)
{
    proc_wd.lock = 0;
    proc_wd.wake_seq = 0;
    PROC_LOCK_CREATED(&proc_wd.lock);
    PROC_IGNORE_WORD(&proc_wd.wake_seq);
    return 1;
}

/* The lock was held: mark it "waited for" (2) and sleep until it is
 * released, until taking it finds it free. */
static PROC_NOINLINE void proc_lock_contended(int seen)
{
    if (seen != 2) {
        seen = __atomic_exchange_n(&proc_wd.lock, 2, __ATOMIC_ACQUIRE);
    }
    while (seen != 0) {
        proc_futex(&proc_wd.lock, FUTEX_WAIT_PRIVATE, 2, NULL);
        seen = __atomic_exchange_n(&proc_wd.lock, 2, __ATOMIC_ACQUIRE);
    }
}

/* (The __sync compare-and-swap returns the old value: no local whose
 * address is taken, which would give every caller a stack canary.) */
static void proc_lock(void)
{
    int seen;

    PROC_LOCK_ACQUIRING(&proc_wd.lock);
    seen = __sync_val_compare_and_swap(&proc_wd.lock, 0, 1);
    if (seen != 0) {
        proc_lock_contended(seen);
    }
    PROC_LOCK_ACQUIRED(&proc_wd.lock);
}

static int proc_trylock(void)
{
    if (__sync_val_compare_and_swap(&proc_wd.lock, 0, 1) != 0) {
        return 0;
    }
    PROC_LOCK_ACQUIRED(&proc_wd.lock);
    return 1;
}

static void proc_unlock(void)
{
    PROC_LOCK_RELEASING(&proc_wd.lock);
    if (__atomic_exchange_n(&proc_wd.lock, 0, __ATOMIC_RELEASE) == 2) {
        proc_futex(&proc_wd.lock, FUTEX_WAKE_PRIVATE, 1, NULL);
    }
    PROC_LOCK_RELEASED(&proc_wd.lock);
}

/* Watchdog thread, lock held: releases it, sleeps until `until` (or a
 * wake-up; PROC_NEVER: no time limit), takes it again. */
static void proc_wd_sleep(apr_time_t until, apr_time_t now)
{
    int seq = (int)proc_wd.wake_seq;
    struct timespec ts, *timeout = NULL;

    if (until != PROC_NEVER) {
        apr_interval_time_t d = until > now ? until - now : 0;
        ts.tv_sec = (time_t)apr_time_sec(d);
        ts.tv_nsec = (long)apr_time_usec(d) * 1000;
        timeout = &ts;
    }
    proc_unlock();
    proc_futex((int *)&proc_wd.wake_seq, FUTEX_WAIT_PRIVATE, seq, timeout);
    proc_lock();
}

/* Lock held: make the watchdog look at the heap again, as soon as the
 * caller calls proc_wd_wake_after_unlock() (so that the thread is not
 * woken straight into a lock that is still held). */
static void proc_wd_wake(void)
{
    proc_wd.wake_seq++;
}

static void proc_wd_wake_after_unlock(void)
{
    proc_futex((int *)&proc_wd.wake_seq, FUTEX_WAKE_PRIVATE, 1, NULL);
}

#else /* APR's mutex and condition variable */

static int proc_lock_create(apr_pool_t *pchild)
{
    return apr_thread_mutex_create(&proc_wd.mutex, APR_THREAD_MUTEX_DEFAULT,
                                   pchild) == APR_SUCCESS
           && apr_thread_cond_create(&proc_wd.wakeup, pchild) == APR_SUCCESS;
}

static void proc_lock(void)
{
    apr_thread_mutex_lock(proc_wd.mutex);
}

static int proc_trylock(void)
{
    return apr_thread_mutex_trylock(proc_wd.mutex) == APR_SUCCESS;
}

static void proc_unlock(void)
{
    apr_thread_mutex_unlock(proc_wd.mutex);
}

static void proc_wd_sleep(apr_time_t until, apr_time_t now)
{
    if (until == PROC_NEVER) {
        apr_thread_cond_wait(proc_wd.wakeup, proc_wd.mutex);
    }
    else {
        apr_thread_cond_timedwait(proc_wd.wakeup, proc_wd.mutex,
                                  until > now ? until - now : 0);
    }
}

static void proc_wd_wake(void)
{
    apr_thread_cond_signal(proc_wd.wakeup);
}

static void proc_wd_wake_after_unlock(void)
{
}

#endif

/* ------------------------------------------------------------------ */
/* Configuration values in effect                                     */

/* Fills in cfg's eff_* fields from what it sets and the defaults (config
 * time only: after a setter, and for a merged record). */
static void proc_cfg_resolve(proc_dir_cfg *cfg)
{
    cfg->eff_interval = cfg->interval == UNSET ? PROC_DEFAULT_INTERVAL
                                               : cfg->interval;
    cfg->eff_delay = cfg->delay == UNSET ? cfg->eff_interval : cfg->delay;
    cfg->eff_max_count = cfg->max_count == UNSET ? PROC_DEFAULT_MAX_COUNT
                                                 : cfg->max_count;
    cfg->eff_max_time = cfg->max_time == UNSET ? 0 : cfg->max_time;
}

/* Adds to one of the counters (any thread).  With GCC or clang one
 * instruction; apr_atomic_add64/sub64 would be a call each. */
static void proc_count(volatile apr_uint64_t *counter, int delta)
{
#if defined(__GNUC__)
    __atomic_add_fetch(counter, (apr_uint64_t)(apr_int64_t)delta,
                       __ATOMIC_RELAXED);
#else
    if (delta > 0) {
        apr_atomic_add64(counter, (apr_uint64_t)delta);
    }
    else {
        apr_atomic_sub64(counter, (apr_uint64_t)-delta);
    }
#endif
}

/* ------------------------------------------------------------------ */
/* Deadline heap (caller holds the lock)                             */

static void proc_heap_place(apr_size_t i, proc_heap_entry entry)
{
    proc_wd.heap[i] = entry;
    entry.pc->heap_idx = i;
}

/* The sifts move a hole at i, with the entry to place in hand, until the
 * entry fits there: each step moves one entry and writes its record's
 * heap_idx; no record is read. */
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

/* Grows the array with realloc (thread-safe, unlike pools); the heap only
 * grows to the child's peak of concurrently armed requests. */
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
    /* The last entry fills the hole at i: up if it is earlier than the
     * hole's parent, else down. */
    if (i > 0 && last.due < proc_wd.heap[(i - 1) / 2].due) {
        proc_heap_sift_up(i, last);
    }
    else {
        proc_heap_sift_down(i, last);
    }
}

/* ------------------------------------------------------------------ */
/* Watchdog thread: everything here runs on it, with the lock held.   */
/* It reads and writes only proc_wd, the [lock] and [arm] fields of   */
/* records, the socket fd and (TLS) the SSL with a private BIO.       */

/* Appends the clear-text bytes of an interim response to pc->pending,
 * encrypted as one TLS record when the connection is TLS.  Returns 0 when
 * the bytes cannot be produced; the record is then dead. */
static int proc_wd_encode(proc_conn *pc, const char *data, apr_size_t len)
{
    BIO *saved;
    int n, out;

    if (!pc->ssl) {
        if (len > sizeof(pc->pending) - pc->pending_len) {
            return 0;
        }
        memcpy(pc->pending + pc->pending_len, data, len);
        pc->pending_len += len;
        return 1;
    }
    if (SSL_get_shutdown(pc->ssl) != 0) {
        return 0;
    }

    /* Swap mod_ssl's write BIO for our memory BIO just for this SSL_write.
     * One extra reference on each keeps both alive across the two
     * SSL_set0_wbio() calls, each of which drops one reference. */
    saved = SSL_get_wbio(pc->ssl);
    BIO_up_ref(saved);
    BIO_up_ref(proc_wd.tls_out);
    SSL_set0_wbio(pc->ssl, proc_wd.tls_out);
    n = SSL_write(pc->ssl, data, (int)len);
    SSL_set0_wbio(pc->ssl, saved);

    if (n != (int)len) {
        ERR_clear_error();
        (void)BIO_reset(proc_wd.tls_out);
        return 0;
    }
    if ((apr_size_t)BIO_ctrl_pending(proc_wd.tls_out)
        > sizeof(pc->pending) - pc->pending_len) {
        /* Cannot happen for a 28-byte record; if it did, the TLS stream is
         * now out of step and the connection cannot be saved. */
        (void)BIO_reset(proc_wd.tls_out);
        return 0;
    }
    out = BIO_read(proc_wd.tls_out, pc->pending + pc->pending_len,
                   (int)(sizeof(pc->pending) - pc->pending_len));
    if (out > 0) {
        pc->pending_len += out;
    }
    return 1;
}

/* Builds one 102 for pc into pc->pending: the bytes httpd formatted at
 * child start, encrypted for TLS. */
static void proc_wd_emit_interim(proc_conn *pc)
{
    if (!proc_wd_encode(pc, proc_wd.interim, proc_wd.interim_len)) {
        pc->dead = 1;
    }
}

/* Writes what it can of pc->pending without blocking. */
static void proc_wd_flush_pending(proc_conn *pc)
{
    while (pc->pending_off < pc->pending_len) {
        ssize_t n = send(pc->fd, pc->pending + pc->pending_off,
                         pc->pending_len - pc->pending_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            pc->pending_off += n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* Clear text not yet started is simply skipped this tick; TLS
             * bytes already advanced the record sequence and must go out
             * later (next tick, or the gate). */
            if (!pc->ssl && pc->pending_off == 0) {
                pc->pending_len = 0;
            }
            ap_log_error(APLOG_MARK, APLOG_TRACE2, 0, pc->s,
                         "102 for connection %ld request %s would block; "
                         "retrying next tick", pc->conn_id, pc->log_id);
            return;
        }
        pc->dead = 1;
        /* A client that went away is normal: never an error-level line. */
        ap_log_error(APLOG_MARK, APLOG_TRACE1, errno, pc->s,
                     "102 for connection %ld request %s not sent; "
                     "no more for this request", pc->conn_id, pc->log_id);
        return;
    }
    if (pc->pending_len > 0) {
        pc->sent++;
        pc->pending_off = pc->pending_len = 0;
        proc_count(&proc_counters->sent_total, 1);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, pc->s,
                     "sent 102 Processing #%d on connection %ld, request %s",
                     pc->sent, pc->conn_id, pc->log_id);
    }
}

/* Whether pc has had all the 102s its limits allow (pending bytes aside). */
static int proc_wd_limits_reached(const proc_conn *pc)
{
    return (pc->max_count && pc->sent >= pc->max_count)
           || pc->due > pc->stop_at;
}

/* One due record: finish or start a 102, then requeue it or let it go. */
static void proc_wd_service(proc_conn *pc, apr_time_t now)
{
    if (pc->pending_len == 0) {
        if (proc_wd_limits_reached(pc)) {
            proc_heap_remove(pc);
            return;
        }
        proc_wd_emit_interim(pc);
    }
    if (!pc->dead) {
        proc_wd_flush_pending(pc);
    }

    /* Next tick on the schedule (armed + delay + k * interval), skipping
     * ticks missed while the machine was busy. */
    do {
        pc->due += pc->interval;
    } while (pc->due <= now);

    if (pc->dead) {
        pc->pending_len = pc->pending_off = 0;
        proc_heap_remove(pc);
        proc_count(&proc_counters->failed_total, 1);
    }
    else if (pc->pending_len == 0 && proc_wd_limits_reached(pc)) {
        proc_heap_remove(pc);
    }
    else {
        proc_heap_postpone(pc);
    }
}

/* t rounded up to the wake-up grid. */
static apr_time_t proc_wd_wake_slot(apr_time_t t)
{
    return (t + PROC_WAKE_GRID - 1) / PROC_WAKE_GRID * PROC_WAKE_GRID;
}

/* Whether the earliest record gets its 102 in this wake-up: when it is
 * due, or when it is a repeat 102 due before the end of this slot. */
static int proc_wd_may_serve(const proc_heap_entry *first, apr_time_t now,
                             apr_time_t slot_end)
{
    return first->due <= now
           || (first->due <= slot_end && first->pc->sent > 0);
}

/* What to sleep toward: the earliest due time or, with nothing queued,
 * the latest due time ever armed while it is ahead.  Sleeping toward that
 * horizon rather than forever means requests that end before their first
 * 102 (the heap empties again) do not make the next arm signal us: under
 * steady fast traffic the thread wakes about once per delay, not per
 * request.  An idle server passes the horizon once and then never wakes. */
static apr_time_t proc_wd_next_wake(apr_time_t now)
{
    if (proc_wd.heap_len > 0) {
        return proc_wd_wake_slot(proc_wd.heap[0].due);
    }
    return proc_wd.horizon > now ? proc_wd_wake_slot(proc_wd.horizon)
                                 : PROC_NEVER;
}

static void *APR_THREAD_FUNC proc_wd_main(apr_thread_t *thread, void *data)
{
    proc_lock();
    while (proc_wd.running) {
        apr_time_t now = apr_time_now();
        apr_time_t slot_end = proc_wd_wake_slot(now);

        while (proc_wd.heap_len > 0
               && proc_wd_may_serve(&proc_wd.heap[0], now, slot_end)) {
            proc_wd_service(proc_wd.heap[0].pc, now);
        }
        proc_wd.sleep_until = proc_wd_next_wake(now);
        proc_wd_sleep(proc_wd.sleep_until, now);
        proc_wd.sleep_until = 0;
    }
    proc_unlock();
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Watchdog lifecycle (child process)                                 */

/* The only output filter of the shadow connection below: keeps what
 * ap_send_interim_response() writes as the child's 102 bytes. */
static apr_status_t proc_capture_filter(ap_filter_t *f,
                                        apr_bucket_brigade *bb)
{
    apr_size_t len = sizeof(proc_wd.interim) - proc_wd.interim_len;
    apr_status_t rv;

    rv = apr_brigade_flatten(bb, proc_wd.interim + proc_wd.interim_len, &len);
    apr_brigade_cleanup(bb);
    if (rv == APR_SUCCESS) {
        proc_wd.interim_len += len;
    }
    return rv;
}

/* What was captured is a whole 102: its status line's start, the blank
 * line that ends it, and not cut short by the buffer. */
static int proc_interim_is_valid(void)
{
    static const char head[] = "HTTP/1.1 102 ";
    static const char blank_line[] = "\r\n\r\n";
    apr_size_t len = proc_wd.interim_len;

    return len >= sizeof(head) - 1 + sizeof(blank_line) - 1
           && len < sizeof(proc_wd.interim)
           && !memcmp(proc_wd.interim, head, sizeof(head) - 1)
           && !memcmp(proc_wd.interim + len - (sizeof(blank_line) - 1),
                      blank_line, sizeof(blank_line) - 1);
}

/* The bytes of a 102, formatted by httpd itself once per child (at child
 * start, before any thread of ours exists): ap_send_interim_response() on
 * a shadow request, in a pool of its own, whose connection's only output
 * filter keeps what it writes.  Its output depends only on the status and
 * on the protocol (HTTP/1.1: older clients are never armed), so each 102
 * is a copy of these bytes and the watchdog runs no httpd code per 102:
 * per 102 it saves ~1,000 instructions and every pool, bucket and filter
 * call (bench/tickcost.py).  The constant bytes if that fails. */
static void proc_format_interim(apr_pool_t *pchild, server_rec *s)
{
    apr_pool_t *p;
    conn_rec *c;
    request_rec *r;
    ap_filter_t *capture;

    proc_wd.interim_len = 0;
    if (apr_pool_create(&p, pchild) == APR_SUCCESS) {
        c = apr_pcalloc(p, sizeof(*c));
        c->pool = p;
        c->base_server = s;
        c->bucket_alloc = apr_bucket_alloc_create(p);
        capture = apr_pcalloc(p, sizeof(*capture));
        capture->frec = proc_capture_handle;
        capture->c = c;
        c->output_filters = capture;

        r = apr_pcalloc(p, sizeof(*r));
        r->pool = p;
        r->connection = c;
        r->server = s;
        r->proto_num = HTTP_VERSION(1, 1);
        r->status = HTTP_PROCESSING;
        r->status_line = "102 Processing";
        r->headers_out = apr_table_make(p, 1);
        ap_send_interim_response(r, 0);
        apr_pool_destroy(p);
    }
    if (!proc_interim_is_valid()) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "cannot capture "
                     "httpd's 102 Processing; sending constant bytes");
        memcpy(proc_wd.interim, PROC_INTERIM_BYTES,
               sizeof(PROC_INTERIM_BYTES) - 1);
        proc_wd.interim_len = sizeof(PROC_INTERIM_BYTES) - 1;
    }
}

/* The watchdog's own pool, on an allocator no other thread uses, for the
 * thread itself: the worker that starts the thread allocates from it
 * once, before the thread exists. */
static apr_status_t proc_wd_make_pool(void)
{
    apr_allocator_t *allocator;
    apr_status_t rv;

    rv = apr_allocator_create(&allocator);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_pool_create_ex(&proc_wd.pool, NULL, NULL, allocator);
    if (rv != APR_SUCCESS) {
        apr_allocator_destroy(allocator);
        return rv;
    }
    apr_allocator_owner_set(allocator, proc_wd.pool);
    apr_pool_tag(proc_wd.pool, "processing_watchdog");
    return APR_SUCCESS;
}

/* Starts the watchdog thread on the first arm (caller holds the lock):
 * a child that never arms a request has no extra thread, so prefork
 * children stay single-threaded (which also keeps glibc's system calls on
 * their fast path) and an idle server has nothing to wake. */
static PROC_NOINLINE int proc_wd_start(request_rec *r)
{
    sigset_t all, saved;
    apr_status_t rv;

    if (proc_wd.closing || proc_wd.start_failed) {
        return 0;
    }
    proc_wd.running = 1;
    /* Signals reach a process on any thread that does not block them, and
     * prefork children exit from their SIGTERM handler: the watchdog must
     * never run one.  It inherits this mask from its first instruction. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    rv = ap_thread_create(&proc_wd.thread, NULL, proc_wd_main, NULL,
                          proc_wd.pool);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (rv != APR_SUCCESS) {
        proc_wd.running = 0;
        proc_wd.thread = NULL;
        proc_wd.start_failed = 1;
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, "cannot start the "
                      "watchdog thread; no 102 Processing in this child");
        return 0;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "watchdog thread started");
    return 1;
}

/* Takes the lock at child exit, giving up after about a second.  prefork
 * runs the child pool's cleanups inside its SIGTERM handler, on the worker
 * thread, which may have been interrupted while holding the lock. */
static int proc_wd_lock_for_exit(void)
{
    int i;

    for (i = 0; i < 200; i++) {
        if (proc_trylock()) {
            return 1;
        }
        apr_sleep(apr_time_from_msec(5));
    }
    return 0;
}

/* Requests still armed when the child exits (a hard stop interrupts their
 * handlers, or never lets them finish) leave the shared "armed now" count
 * with the child; their later disarms, if any, no longer count. */
static void proc_wd_release_counters(void)
{
    if (proc_wd.armed_here > 0) {
        apr_atomic_sub64(&proc_counters->armed_now, proc_wd.armed_here);
        proc_wd.armed_here = 0;
    }
}

/* Pre-cleanup of the child pool: it runs after the MPM's workers have
 * finished (so long requests keep their 102s through a graceful restart or
 * stop) and before any sub-pool holding records is destroyed. */
static apr_status_t proc_wd_stop(void *data)
{
    apr_status_t rv;
    apr_size_t i;

    if (!proc_wd_lock_for_exit()) {
        /* Our own interrupted code holds the lock, so the watchdog can
         * never take it again and touches nothing more; the process exits
         * right after this cleanup. */
        proc_wd.stopped = 1;
        proc_wd_release_counters();
        return APR_SUCCESS;
    }
    proc_wd.closing = 1;
    proc_wd.running = 0;
    proc_wd_wake();
    proc_unlock();
    proc_wd_wake_after_unlock();
    if (proc_wd.thread) {
        apr_thread_join(&rv, proc_wd.thread);
        proc_wd.thread = NULL;
    }

    /* Requests may still be armed (prefork's SIGTERM interrupts a handler;
     * its request pool is destroyed after this): let them go. */
    for (i = 0; i < proc_wd.heap_len; i++) {
        proc_wd.heap[i].pc->heap_idx = PROC_NOT_QUEUED;
    }
    proc_wd.stopped = 1;
    proc_wd_release_counters();
    free(proc_wd.heap);
    proc_wd.heap = NULL;
    proc_wd.heap_len = proc_wd.heap_cap = 0;
    BIO_free(proc_wd.tls_out);
    proc_wd.tls_out = NULL;
    apr_pool_destroy(proc_wd.pool);
    proc_wd.pool = NULL;
    return APR_SUCCESS;
}

static void proc_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    memset(&proc_wd, 0, sizeof(proc_wd));
    rv = proc_lock_create(pchild) ? proc_wd_make_pool() : APR_ENOMEM;
    if (rv == APR_SUCCESS && !(proc_wd.tls_out = BIO_new(BIO_s_mem()))) {
        rv = APR_ENOMEM;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "cannot set up the "
                     "watchdog; no 102 Processing will be sent");
        return;
    }
    proc_format_interim(pchild, s);
    proc_wd.sleep_until = PROC_NEVER;
    proc_wd.ready = 1;
    apr_pool_pre_cleanup_register(pchild, NULL, proc_wd_stop);
}

/* ------------------------------------------------------------------ */
/* Worker side: arm and disarm                                        */

static apr_status_t proc_conn_cleanup(void *data);

static proc_conn *proc_conn_get(conn_rec *c)
{
    proc_conn *pc = ap_get_module_config(c->conn_config, &processing_module);

    if (!pc) {
        pc = apr_palloc(c->pool, sizeof(*pc));
        memset(pc, 0, APR_OFFSETOF(proc_conn, pending));
        pc->heap_idx = PROC_NOT_QUEUED;
        pc->c = c;
        pc->fd = -1;
        ap_set_module_config(c->conn_config, &processing_module, pc);
        apr_pool_cleanup_register(c->pool, pc, proc_conn_cleanup,
                                  apr_pool_cleanup_null);
    }
    return pc;
}

/* Writes the remainder of a 102 the watchdog could not finish, blocking
 * (with the connection's Timeout) in the worker thread, before any other
 * byte of the connection. */
static PROC_NOINLINE void proc_write_remainder(proc_conn *pc,
                                               const unsigned char *buf,
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
}

/* processing-sent for %{processing-sent}n.  mod_log_config may log the
 * last request of an internal redirect chain, so every one gets it.  A
 * note the handler has not set yet is appended without the search that
 * apr_table_setn() makes (a third of this function's cost per request). */
static void proc_set_sent_note(proc_conn *pc, int sent)
{
    request_rec *r = pc->r;
    const char *val = sent ? apr_itoa(r->pool, sent) : "0";

    if (pc->note_set) {
        apr_table_setn(r->notes, "processing-sent", val);
    }
    else {
        apr_table_addn(r->notes, "processing-sent", val);
    }
    for (r = r->next; r; r = r->next) {
        apr_table_setn(r->notes, "processing-sent", val);
    }
}

/* Stops 102s for the current request.  Called by the gates (first byte of
 * any output, or TLS input) and, as safety nets, by the pool cleanups of
 * a request waiting for its body and of the connection.  Once pc->armed
 * is 0 under the lock the watchdog never touches pc again. */
static void proc_disarm(proc_conn *pc, const char *why)
{
    apr_size_t rest_off, rest_len;
    int sent;

    if (proc_wd.stopped) {
        /* The child is exiting and the watchdog is gone (or can never run
         * again): nothing to coordinate with. */
        pc->armed = 0;
        return;
    }
    proc_lock();
    pc->armed = 0;
    proc_heap_remove(pc);
    /* From here the watchdog never looks at pc, so the unsent remainder
     * can be written from pc->pending after the lock is released: the
     * buffer is used again only by this connection's next arm. */
    rest_off = pc->pending_off;
    rest_len = pc->pending_len - rest_off;
    pc->pending_len = pc->pending_off = 0;
    sent = pc->sent + (rest_len > 0);
    proc_wd.armed_here--;
    proc_unlock();

    proc_count(&proc_counters->armed_now, -1);
    if (rest_len > 0) {
        proc_write_remainder(pc, pc->pending + rest_off, rest_len);
        proc_count(&proc_counters->sent_total, 1);
    }
    if (pc->r) {
        proc_set_sent_note(pc, sent);
        if (pc->log_debug) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, pc->r,
                          "disarmed (%s) after %d 102 Processing, "
                          "request %s", why, sent, pc->log_id);
        }
        /* Its response has started: nothing of it needs the record now,
         * and the record must not keep a pointer into its pool. */
        pc->r = NULL;
    }
}

static PROC_NOINLINE apr_status_t proc_gate_out_armed(ap_filter_t *f,
                                                      apr_bucket_brigade *bb)
{
    proc_disarm(f->ctx, "response started");
    return ap_pass_brigade(f->next, bb);
}

/* The output gate: a connection filter above mod_ssl's.  Armed: disarm
 * first, then let the bytes through.  Not armed (every later pass of
 * the response, and connections between requests): one test and a tail
 * call, with the armed branch out of line so that no register is saved. */
static apr_status_t proc_gate_out(ap_filter_t *f, apr_bucket_brigade *bb)
{
    if (((proc_conn *)f->ctx)->armed) {
        return proc_gate_out_armed(f, bb);
    }
    return ap_pass_brigade(f->next, bb);
}

/* The input gate, TLS only: mod_ssl's SSL_read may not run while the
 * watchdog could be in SSL_write on the same SSL. */
static apr_status_t proc_gate_in(ap_filter_t *f, apr_bucket_brigade *bb,
                                 ap_input_mode_t mode,
                                 apr_read_type_e block, apr_off_t readbytes)
{
    proc_conn *pc = f->ctx;

    if (pc->armed) {
        proc_disarm(pc, "connection read");
    }
    return ap_get_brigade(f->next, bb, mode, block, readbytes);
}

/* For a request that waits for its body (it may end without ever
 * arming).  A request's pool can outlive the start of the next request on
 * the connection (pipelined responses are written later), so the record
 * is released only by the request that holds it. */
static apr_status_t proc_request_cleanup(void *data)
{
    request_rec *r = data;
    proc_conn *pc = ap_get_module_config(r->connection->conn_config,
                                         &processing_module);

    if (pc->r != r) {
        return APR_SUCCESS;
    }
    pc->r = NULL;           /* the request is going away: no note, no log */
    if (pc->armed) {
        proc_disarm(pc, "request ended");
    }
    return APR_SUCCESS;
}

/* The record lives in c->pool: whatever happened to the requests, it
 * leaves the watchdog's heap before its memory goes.  (An armed request
 * always ends through the output gate: httpd passes the request's end,
 * the EOR bucket, down the connection's filters.  This is the safety
 * net under that, e.g. a child exiting in the middle of a handler.) */
static apr_status_t proc_conn_cleanup(void *data)
{
    proc_conn *pc = data;

    pc->r = NULL;           /* its pool is gone already */
    if (pc->armed) {
        proc_disarm(pc, "connection closed");
    }
    return APR_SUCCESS;
}

/* Whether r is an internal redirect of the request that holds pc. */
static int proc_is_redirect_of(const request_rec *r, const proc_conn *pc)
{
    const request_rec *prev;

    for (prev = r->prev; prev; prev = prev->prev) {
        if (prev == pc->r) {
            return 1;
        }
    }
    return 0;
}

/* Bytes of an earlier response may still sit in the core output filter
 * (pipelining) or in mod_ssl's buffers; push them out now, in the worker,
 * so that a raw 102 can never overtake them. */
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

/* The gates go in on the connection's first arm and stay for its life, so
 * a connection that never arms carries no filter of ours.  Passing r lets
 * httpd relink the request's filter chain to the new head. */
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

/* The watchdog names the request in its log lines (debug and trace) by
 * a copy of its log id, made only when the request logs this module at
 * debug level; one level check also serves the worker's arm and disarm
 * lines.  (A server at debug level with this request's directory set
 * lower logs the watchdog's lines with "-" for the request: they still
 * name the connection.) */
static void proc_copy_log_id(request_rec *r, proc_conn *pc)
{
    pc->log_debug = APLOG_R_IS_LEVEL(r, APLOG_DEBUG);
    if (!pc->log_debug) {
        pc->log_id[0] = '-';
        pc->log_id[1] = '\0';
        return;
    }
    if (!r->log_id) {
        ap_run_generate_log_id(r->connection, r, &r->log_id);
    }
    apr_cpystrn(pc->log_id, r->log_id ? r->log_id : "-",
                sizeof(pc->log_id));
}

/* The env var's cap applied to max (out of line: rare, and strtol's &end
 * would give proc_arm a stack canary). */
static PROC_NOINLINE int proc_env_max_count(request_rec *r, int max)
{
    const char *cap = apr_table_get(r->subprocess_env,
                                    "processing-max-count");
    char *end;
    long n;

    if (!cap) {
        return max;
    }
    n = strtol(cap, &end, 10);
    if (end == cap || *end || n < 1 || n > PROC_MAX_COUNT_LIMIT) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "ignoring "
                      "processing-max-count '%s' (allowed 1 to %d)",
                      cap, PROC_MAX_COUNT_LIMIT);
        return max;
    }
    return (max == 0 || n < max) ? (int)n : max;
}

/* ProcessingMaxCount, lowered (never raised) by the env var
 * processing-max-count=N (1..1000) that BrowserMatch/SetEnvIf set for
 * clients and proxies known to accept only N interim responses. */
static int proc_request_max_count(request_rec *r, const proc_dir_cfg *cfg)
{
    int max = cfg->eff_max_count;

    if (apr_table_elts(r->subprocess_env)->nelts == 0) {
        return max;
    }
    return proc_env_max_count(r, max);
}

/* The request is fully received and its handler runs: start the clock,
 * from `start` (when the request or its body was complete). */
static void proc_arm(request_rec *r, proc_conn *pc, const proc_dir_cfg *cfg,
                     apr_time_t start)
{
    apr_interval_time_t max_time = cfg->eff_max_time;
    apr_time_t due = start + cfg->eff_delay;
    int queued, woke;

    proc_flush_connection(r, pc);
    proc_add_gates(r, pc);
    if (pc->fd < 0
        && apr_os_sock_get(&pc->fd, ap_get_conn_socket(r->connection))
           != APR_SUCCESS) {
        return;
    }
    pc->interval = cfg->eff_interval;
    pc->max_count = proc_request_max_count(r, cfg);
    pc->s = r->server;
    pc->conn_id = r->connection->id;
    proc_copy_log_id(r, pc);

    proc_lock();
    pc->sent = 0;
    pc->dead = 0;
    pc->pending_len = pc->pending_off = 0;
    pc->due = due;
    pc->stop_at = max_time ? start + max_time : PROC_NEVER;
    queued = (proc_wd.thread || proc_wd_start(r)) && proc_wd.running
             && proc_heap_push(pc);
    pc->armed = queued;
    if (queued) {
        proc_wd.armed_here++;
        if (pc->due > proc_wd.horizon) {
            proc_wd.horizon = pc->due;
        }
    }
    /* Wake the watchdog only if it sleeps toward a later time: a request
     * that ends before its first 102 then costs no context switch. */
    /* (sleep_until is on the grid, or 0 while the thread is awake, or
     * PROC_NEVER: due's slot is earlier exactly when this holds.) */
    woke = queued && due + PROC_WAKE_GRID <= proc_wd.sleep_until;
    if (woke) {
        proc_wd_wake();
    }
    proc_unlock();
    if (woke) {
        proc_wd_wake_after_unlock();
    }

    if (queued) {
        proc_count(&proc_counters->armed_now, 1);
        proc_count(&proc_counters->armed_total, 1);
        if (cfg->require_prefer == 1) {
            /* RFC 7240: tell the client its preference was honoured. */
            apr_table_mergen(r->err_headers_out, "Preference-Applied",
                             "processing");
        }
    }
    if (pc->log_debug) {
        /* `due`, not pc->due: once queued, that is the watchdog's. */
        apr_time_t now = apr_time_now();
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "armed%s: first 102 "
                      "in %" APR_TIME_T_FMT "ms, then every %" APR_TIME_T_FMT
                      "ms, at most %d (0: no limit), request %s",
                      queued ? "" : " FAILED (out of memory)",
                      apr_time_as_msec(due > now ? due - now : 0),
                      apr_time_as_msec(pc->interval), pc->max_count,
                      pc->log_id);
    }
}

/* Whether the response (headers or its end) already went down the filter
 * chain: a body read after that (by the handler, or httpd discarding the
 * unread body once the handler returned) must not arm, or a 102 would
 * follow the final response.  Output that starts after arming crosses the
 * gate instead. */
static int proc_response_started(const request_rec *r)
{
    return r->sent_bodyct || r->eos_sent;
}

/* Request input filter above HTTP_IN: arms when the body reaches EOS. */
static apr_status_t proc_body_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                     ap_input_mode_t mode,
                                     apr_read_type_e block,
                                     apr_off_t readbytes)
{
    apr_status_t rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    apr_bucket *e;

    if (rv != APR_SUCCESS || mode == AP_MODE_SPECULATIVE) {
        return rv;
    }
    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        if (APR_BUCKET_IS_EOS(e)) {
            proc_conn *pc = f->ctx;
            ap_remove_input_filter(f);
            if (pc->r == f->r && !pc->armed && !proc_response_started(f->r)) {
                proc_arm(f->r, pc, ap_get_module_config(f->r->per_dir_config,
                                                        &processing_module),
                         apr_time_now());
            }
            break;
        }
    }
    return rv;
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
    if (apr_table_elts(r->subprocess_env)->nelts > 0
        && apr_table_get(r->subprocess_env, "no-processing")) {
        return "no-processing set";
    }
    return NULL;
}

/* Whether the Prefer header (RFC 7240; httpd merges repeated headers into
 * one comma-separated list) carries the "processing" preference, with or
 * without a value or parameters, in any letter case. */
static int proc_prefers_processing(request_rec *r)
{
    const char *v = apr_table_get(r->headers_in, "Prefer");

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

/* Runs first among handlers and always declines: the handler is about to
 * start, so the request may be armed now or once its body is read. */
static int proc_handler(request_rec *r)
{
    const proc_dir_cfg *cfg = ap_get_module_config(r->per_dir_config,
                                                   &processing_module);
    const char *why;
    proc_conn *pc;

    if (cfg->enabled != 1 || !proc_wd.ready) {
        return DECLINED;
    }
    why = proc_ineligible(r);
    if (!why && cfg->require_prefer == 1 && !proc_prefers_processing(r)) {
        why = "no 'Prefer: processing' (ProcessingRequirePrefer On)";
    }
    if (why) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "not armed: %s", why);
        return DECLINED;
    }
    pc = proc_conn_get(r->connection);
    if (pc->r && proc_is_redirect_of(r, pc)) {
        /* The original request already armed or waits for its body; its
         * record covers this handler too. */
        return DECLINED;
    }
    if (pc->armed) {
        /* Cannot happen (the previous request's end crossed the gate),
         * but never let one request inherit another's schedule; that
         * request may be gone, so no note for it. */
        pc->r = NULL;
        proc_disarm(pc, "next request");
    }
    pc->r = r;

    if (ap_request_has_body(r)) {
        /* Armed later, if at all: log "0" until then. */
        apr_table_setn(r->notes, "processing-sent", "0");
        pc->note_set = 1;
        apr_pool_cleanup_register(r->pool, r, proc_request_cleanup,
                                  apr_pool_cleanup_null);
        ap_add_input_filter_handle(proc_body_filter_handle, pc, r,
                                   r->connection);
    }
    else {
        /* Armed now; its end always crosses the gate, which disarms it
         * and lets go of r (no pool cleanup needed per request). */
        /* The request was complete when its head was read: the clock
         * starts there, as the client's and any proxy's own timer did. */
        pc->note_set = 0;
        proc_arm(r, pc, cfg, r->request_time);
    }
    return DECLINED;
}

/* mod_ssl tells us each TLS connection's SSL (never for proxy backends). */
static int proc_ssl_pre_handshake(conn_rec *c, SSL *ssl, int is_proxy)
{
    if (!is_proxy && !c->outgoing) {
        proc_conn_get(c)->ssl = ssl;
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
    cfg->require_prefer = UNSET;
    cfg->configured = 0;
    proc_cfg_resolve(cfg);
    return cfg;
}

/* Both sides set something of ours: a new record, each field from the
 * more specific side where it is set there. */
static PROC_NOINLINE void *proc_merge_both(apr_pool_t *p,
                                           const proc_dir_cfg *base,
                                           const proc_dir_cfg *add)
{
    proc_dir_cfg *cfg = apr_palloc(p, sizeof(*cfg));

    cfg->configured = 1;
    cfg->enabled = add->enabled != UNSET ? add->enabled : base->enabled;
    cfg->interval = add->interval != UNSET ? add->interval : base->interval;
    cfg->delay = add->delay != UNSET ? add->delay : base->delay;
    cfg->max_count = add->max_count != UNSET ? add->max_count
                                             : base->max_count;
    cfg->max_time = add->max_time != UNSET ? add->max_time : base->max_time;
    cfg->require_prefer = add->require_prefer != UNSET ? add->require_prefer
                                                       : base->require_prefer;
    proc_cfg_resolve(cfg);
    return cfg;
}

/* httpd merges every <Directory>/<Location> section on every request, with
 * or without our directives: when one side sets nothing of ours, the
 * result is the other side as it is (neither is ever written to), without
 * an allocation. */
static void *proc_merge_dir_cfg(apr_pool_t *p, void *base, void *add)
{
    if (!((proc_dir_cfg *)add)->configured) {
        return base;
    }
    if (!((proc_dir_cfg *)base)->configured) {
        return add;
    }
    return proc_merge_both(p, base, add);
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

/* After any directive: the record now sets something of ours, and its
 * values in effect change. */
static const char *proc_cfg_changed(void *dcfg, const char *err)
{
    ((proc_dir_cfg *)dcfg)->configured = 1;
    proc_cfg_resolve(dcfg);
    return err;
}

static const char *proc_set_enabled(cmd_parms *cmd, void *dcfg, int flag)
{
    ((proc_dir_cfg *)dcfg)->enabled = flag;
    return proc_cfg_changed(dcfg, NULL);
}

static const char *proc_set_require_prefer(cmd_parms *cmd, void *dcfg,
                                           int flag)
{
    ((proc_dir_cfg *)dcfg)->require_prefer = flag;
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
    apr_uint64_t now = apr_atomic_read64(&proc_counters->armed_now);
    apr_uint64_t total = apr_atomic_read64(&proc_counters->armed_total);
    apr_uint64_t sent = apr_atomic_read64(&proc_counters->sent_total);
    apr_uint64_t failed = apr_atomic_read64(&proc_counters->failed_total);

    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "ProcessingArmed: %" APR_UINT64_T_FMT "\n"
                   "ProcessingArmedTotal: %" APR_UINT64_T_FMT "\n"
                   "ProcessingSent: %" APR_UINT64_T_FMT "\n"
                   "ProcessingSendFailed: %" APR_UINT64_T_FMT "\n",
                   now, total, sent, failed);
        return OK;
    }
    ap_rprintf(r, "<hr />\n<h2>mod_processing (102 Processing)</h2>\n"
               "<table border=\"0\">\n"
               "<tr><th align=\"left\">Requests armed now</th>"
               "<td>%" APR_UINT64_T_FMT "</td></tr>\n"
               "<tr><th align=\"left\">Requests armed in total</th>"
               "<td>%" APR_UINT64_T_FMT "</td></tr>\n"
               "<tr><th align=\"left\">102 Processing sent</th>"
               "<td>%" APR_UINT64_T_FMT "</td></tr>\n"
               "<tr><th align=\"left\">Sends that failed</th>"
               "<td>%" APR_UINT64_T_FMT "</td></tr>\n</table>\n",
               now, total, sent, failed);
    return OK;
}

/* ------------------------------------------------------------------ */
/* Registration                                                       */

static void proc_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(proc_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(proc_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, proc_status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
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
    /* Never added to a real chain: the shadow connection's only filter
     * (proc_format_interim). */
    proc_capture_handle =
        ap_register_output_filter("PROCESSING_CAPTURE", proc_capture_filter,
                                  NULL, AP_FTYPE_NETWORK);
}

static const command_rec proc_cmds[] = {
    AP_INIT_FLAG("Processing", proc_set_enabled, NULL, OR_FILEINFO,
                 "On or Off: send 102 Processing while handlers run long "
                 "(default Off)"),
    AP_INIT_FLAG("ProcessingRequirePrefer", proc_set_require_prefer, NULL,
                 OR_FILEINFO,
                 "On: only requests with 'Prefer: processing' get 102s "
                 "(default Off)"),
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
