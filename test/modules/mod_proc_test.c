/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements.  See the NOTICE file distributed with
 * this work for additional information regarding copyright ownership.
 * The ASF licenses this file to You under the Apache License, Version 2.0
 * (the "License"); you may not use this file except in compliance with
 * the License.  You may obtain a copy of the License at
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
 * mod_proc_test: the handler "proc-test" for mod_processing's test suite.
 * It is a stand-in for a slow handler (DAV, CGI, a proxied backend) whose
 * timing and output the tests control through the query string:
 *
 *   sleep=MS     sleep this long after the body was read (default 0)
 *   status=N     final status (default 200); N >= 400 is returned from the
 *                handler after the sleep, so httpd sends its error response
 *   len=N        response body bytes of PT_PATTERN repeated (default 64)
 *   read=0|1|2   read the request body to EOS before sleeping (1, the
 *                default), never (0), or only after the whole response
 *                body was sent and flushed (2: then sleep, then end it)
 *   early=N      send the first N body bytes and flush before sleeping
 *   interim=MS   send "103 Early Hints" MS into the sleep (default never)
 *   cl=0|1       set Content-Length (default 1); 0 sends the body in two
 *                passes without one, so httpd chunks it
 *   fail=N       after the early bytes and the sleep, return status N
 *                (400..599) instead of the rest of the body: httpd then
 *                sends its error response, or an ErrorDocument
 *   lookup=MS    during the sleep, every MS (the first MS into it) make a
 *                lookup subrequest for
 *                the URI in the request header X-Lookup (as mod_dav's
 *                COPY/MOVE look up their Destination), then destroy it
 *   connect=MS   during the sleep, every MS open a TCP connection to
 *                127.0.0.1 on the port in the request header X-Connect-Port
 *                and write "proc-test socket\n" (as a handler opens a
 *                backend connection); they stay open until the request ends
 *   rputs=1      write the body with ap_rputs() and return OK without
 *                flushing or sending EOS: the body waits in OLD_WRITE, and
 *                httpd ends the response after the handler (and, with
 *                read=0, first discards the unread request body)
 *   hold=MS      an output filter that holds the response's EOS for MS
 *                before passing it on (a slow output filter)
 *   swapfd=MS    first, for MS, the client socket's descriptor number is
 *                another socket's (a TCP connection to X-Connect-Port that
 *                gets "proc-test socket\n"), as after an ungraceful stop
 *                closed it and the child opened a socket; then it is the
 *                client's again
 *
 * Request header "X-Sub: URI" first runs URI as a subrequest whose output
 * becomes the start of the body; "X-Redirect: URI" ends the handler with an
 * internal redirect to URI after the sleep. Response headers: X-Received
 * (request body bytes read) and X-Received-Sum (their byte sum modulo
 * 2^32).
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_log.h"
#include "util_filter.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_time.h"
#include "apr_network_io.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

module AP_MODULE_DECLARE_DATA proc_test_module;

/* The tests know this pattern: body byte i is PT_PATTERN[i % 62]. */
#define PT_PATTERN "0123456789abcdefghijklmnopqrstuvwxyz" \
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define PT_PATTERN_LEN 62
#define PT_MAX_LEN (64 * 1024 * 1024)
#define PT_MAX_MS (10 * 60 * 1000)

typedef struct {
    apr_int64_t sleep_ms;   /* sleep after reading the body */
    apr_int64_t status;     /* final status */
    apr_int64_t len;        /* response body length */
    apr_int64_t read;       /* read the request body first */
    apr_int64_t early;      /* bytes sent and flushed before the sleep */
    apr_int64_t interim_ms; /* when to send a 103, -1 = never */
    apr_int64_t cl;         /* set Content-Length */
    apr_int64_t fail;       /* status returned after the sleep, 0 = none */
    apr_int64_t lookup_ms;  /* lookup subrequest period, 0 = none */
    apr_int64_t connect_ms; /* new outgoing connection period, 0 = none */
    apr_int64_t rputs;      /* body through ap_rputs, no EOS */
    apr_int64_t hold_ms;    /* the PT_HOLD filter holds EOS this long */
    apr_int64_t swapfd_ms;  /* the client's fd number is another socket's */
} pt_args_t;

static ap_filter_rec_t *pt_hold_handle;

/* Parse a decimal in [min, max]; junk, signs and overflow are rejected. */
static int pt_parse_num(const char *s, apr_int64_t min, apr_int64_t max,
                        apr_int64_t *out)
{
    char *end;
    apr_int64_t v;

    if (!*s || !apr_isdigit(*s)) {
        return 0;
    }
    errno = 0;
    v = apr_strtoi64(s, &end, 10);
    if (errno || *end || v < min || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

static int pt_parse_args(request_rec *r, pt_args_t *a)
{
    char *args, *pair, *state, *eq;
    apr_int64_t *slot;
    apr_int64_t min, max;

    a->sleep_ms = 0;
    a->status = HTTP_OK;
    a->len = 64;
    a->read = 1;
    a->early = 0;
    a->interim_ms = -1;
    a->cl = 1;
    a->fail = 0;
    a->lookup_ms = 0;
    a->connect_ms = 0;
    a->rputs = 0;
    a->hold_ms = 0;
    a->swapfd_ms = 0;

    if (!r->args) {
        return 1;
    }
    args = apr_pstrdup(r->pool, r->args);
    for (pair = apr_strtok(args, "&", &state); pair;
         pair = apr_strtok(NULL, "&", &state)) {
        eq = strchr(pair, '=');
        if (!eq) {
            return 0;
        }
        *eq++ = '\0';
        min = 0;
        max = 1;
        if (!strcmp(pair, "sleep")) {
            slot = &a->sleep_ms;
            max = PT_MAX_MS;
        }
        else if (!strcmp(pair, "status")) {
            slot = &a->status;
            min = 200;
            max = 599;
        }
        else if (!strcmp(pair, "len")) {
            slot = &a->len;
            max = PT_MAX_LEN;
        }
        else if (!strcmp(pair, "read")) {
            slot = &a->read;
            max = 2;
        }
        else if (!strcmp(pair, "early")) {
            slot = &a->early;
            max = PT_MAX_LEN;
        }
        else if (!strcmp(pair, "interim")) {
            slot = &a->interim_ms;
            max = PT_MAX_MS;
        }
        else if (!strcmp(pair, "cl")) {
            slot = &a->cl;
        }
        else if (!strcmp(pair, "fail")) {
            slot = &a->fail;
            min = 400;
            max = 599;
        }
        else if (!strcmp(pair, "lookup")) {
            slot = &a->lookup_ms;
            min = 1;
            max = PT_MAX_MS;
        }
        else if (!strcmp(pair, "connect")) {
            slot = &a->connect_ms;
            min = 1;
            max = PT_MAX_MS;
        }
        else if (!strcmp(pair, "rputs")) {
            slot = &a->rputs;
        }
        else if (!strcmp(pair, "swapfd")) {
            slot = &a->swapfd_ms;
            max = PT_MAX_MS;
        }
        else if (!strcmp(pair, "hold")) {
            slot = &a->hold_ms;
            max = PT_MAX_MS;
        }
        else {
            return 0;
        }
        if (!pt_parse_num(eq, min, max, slot)) {
            return 0;
        }
    }
    if (a->early > a->len) {
        a->early = a->len;
    }
    return 1;
}

/* Read the request body to EOS, counting bytes and their sum. */
static int pt_read_body(request_rec *r, apr_off_t *n, apr_uint32_t *sum)
{
    char buf[8192];
    long got, i;
    int rc;

    *n = 0;
    *sum = 0;
    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        return rc;
    }
    if (ap_should_client_block(r)) {
        while ((got = ap_get_client_block(r, buf, sizeof(buf))) > 0) {
            for (i = 0; i < got; i++) {
                *sum += (unsigned char)buf[i];
            }
            *n += got;
        }
        if (got < 0) {
            return HTTP_BAD_REQUEST;
        }
    }
    return OK;
}

/* Append body bytes [from, to) of the pattern to bb. */
static apr_status_t pt_write_body(request_rec *r, apr_bucket_brigade *bb,
                                  apr_int64_t from, apr_int64_t to)
{
    char buf[PT_PATTERN_LEN * 64];
    apr_int64_t i, n;
    apr_size_t j;
    apr_status_t rv;

    while (from < to) {
        n = to - from;
        if (n > (apr_int64_t)sizeof(buf)) {
            n = sizeof(buf);
        }
        for (j = 0, i = from; j < (apr_size_t)n; j++, i++) {
            buf[j] = PT_PATTERN[i % PT_PATTERN_LEN];
        }
        rv = apr_brigade_write(bb, NULL, NULL, buf, (apr_size_t)n);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        from += n;
    }
    return APR_SUCCESS;
}

/* Sleep until start + ms. A signal (prefork's graceful restart sends
 * SIGUSR1 to busy children) cuts apr_sleep short: sleep again. */
static void pt_sleep_until(apr_time_t start, apr_int64_t ms)
{
    apr_time_t until = start + apr_time_from_msec(ms);
    apr_time_t now;

    while ((now = apr_time_now()) < until) {
        apr_sleep(until - now);
    }
}

/* One lookup subrequest, made and destroyed: its request phases run
 * (mod_ssl's access hook among them) but no handler. */
static void pt_lookup(request_rec *r)
{
    const char *uri = apr_table_get(r->headers_in, "X-Lookup");
    request_rec *rr;

    if (!uri) {
        return;
    }
    rr = ap_sub_req_lookup_uri(uri, r, NULL);
    ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                  "proc_test: lookup %s gave %d", uri, rr->status);
    ap_destroy_sub_req(rr);
}

/* A new outgoing connection, left open until the request's pool goes. */
static void pt_connect(request_rec *r)
{
    const char *port = apr_table_get(r->headers_in, "X-Connect-Port");
    apr_sockaddr_t *sa;
    apr_socket_t *sock;
    apr_size_t len;

    if (!port
        || apr_sockaddr_info_get(&sa, "127.0.0.1", APR_INET,
                                 (apr_port_t)atoi(port), 0, r->pool)
           != APR_SUCCESS
        || apr_socket_create(&sock, APR_INET, SOCK_STREAM, APR_PROTO_TCP,
                             r->pool) != APR_SUCCESS) {
        return;
    }
    if (apr_socket_connect(sock, sa) == APR_SUCCESS) {
        len = 17;
        apr_socket_send(sock, "proc-test socket\n", &len);
    }
}

/* Sleep until start + ms, with the lookups and connections asked for
 * meanwhile. */
static void pt_busy_sleep(request_rec *r, const pt_args_t *a,
                          apr_time_t start, apr_int64_t ms)
{
    apr_time_t until = start + apr_time_from_msec(ms);
    apr_interval_time_t step = apr_time_from_msec(
        a->lookup_ms ? a->lookup_ms : a->connect_ms);
    apr_time_t next;

    if (!a->lookup_ms && !a->connect_ms) {
        pt_sleep_until(start, ms);
        return;
    }
    for (next = apr_time_now() + step; next < until; next += step) {
        pt_sleep_until(next, 0);
        if (a->lookup_ms) {
            pt_lookup(r);
        }
        if (a->connect_ms) {
            pt_connect(r);
        }
    }
    pt_sleep_until(start, ms);
}

/* httpd.h has HTTP_EARLY_HINTS, and http_protocol.c a status line for 103,
 * only in releases after 2.4.62 (Debian's 2.4.71 has both); up to 2.4.62
 * ap_get_status_line(103) is "500 Internal Server Error". So the status
 * line is set here, which every 2.4 release sends as given. */
#ifndef HTTP_EARLY_HINTS
#define HTTP_EARLY_HINTS 103
#endif

/* Send "103 Early Hints" with only a Link header: ap_send_interim_response
 * sends and clears r->headers_out, so give it a table of its own. */
static void pt_send_103(request_rec *r)
{
    apr_table_t *saved = r->headers_out;
    int status = r->status;

    r->headers_out = apr_table_make(r->pool, 1);
    apr_table_setn(r->headers_out, "Link", "</pt.css>; rel=preload");
    r->status = HTTP_EARLY_HINTS;
    r->status_line = "103 Early Hints";
    ap_send_interim_response(r, 1);
    r->status = status;
    r->status_line = NULL;
    r->headers_out = saved;
}

/* swapfd=MS: dup2() puts another socket on the client socket's number for
 * ms, then the client socket back. */
static void pt_swap_fd(request_rec *r, apr_int64_t ms)
{
    const char *port = apr_table_get(r->headers_in, "X-Connect-Port");
    struct sockaddr_in sa;
    apr_os_sock_t fd;
    int saved, other;

    if (!port || apr_os_sock_get(&fd, ap_get_conn_socket(r->connection))
                 != APR_SUCCESS) {
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    saved = dup(fd);
    other = socket(AF_INET, SOCK_STREAM, 0);
    if (saved < 0 || other < 0
        || connect(other, (struct sockaddr *)&sa, sizeof(sa)) != 0
        || write(other, "proc-test socket\n", 17) != 17
        || dup2(other, fd) < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, errno, r, "proc_test: swapfd");
    }
    else {
        pt_sleep_until(apr_time_now(), ms);
    }
    if (saved >= 0) {
        dup2(saved, fd);
        close(saved);
    }
    if (other >= 0) {
        close(other);
    }
}

/* PT_HOLD: holds the brigade that carries EOS for f->ctx milliseconds
 * (an apr_int64_t), then passes it on. */
static apr_status_t pt_hold_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    apr_int64_t *ms = f->ctx;

    if (!APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(bb))) {
        pt_sleep_until(apr_time_now(), *ms);
        ap_remove_output_filter(f);
    }
    return ap_pass_brigade(f->next, bb);
}

/* The body through ap_rputs(), left in OLD_WRITE: httpd sends it, with
 * EOS, only after the handler returned. */
static int pt_rputs_body(request_rec *r, const pt_args_t *a)
{
    apr_int64_t i;

    for (i = 0; i < a->len; i++) {
        if (ap_rputc(PT_PATTERN[i % PT_PATTERN_LEN], r) < 0) {
            return AP_FILTER_ERROR;
        }
    }
    return OK;
}

static int pt_run_sub(request_rec *r, const char *uri)
{
    request_rec *rr;
    int rc;

    rr = ap_sub_req_lookup_uri(uri, r, r->output_filters);
    rc = rr->status;
    if (rc == HTTP_OK || rc == OK) {
        rc = ap_run_sub_req(rr);
    }
    ap_destroy_sub_req(rr);
    return rc;
}

static int pt_handler(request_rec *r)
{
    pt_args_t a;
    apr_bucket_brigade *bb;
    apr_time_t start;
    apr_off_t received = 0;
    apr_uint32_t sum = 0;
    apr_int64_t mid;
    const char *sub;
    int rc;

    if (!r->handler || strcmp(r->handler, "proc-test")) {
        return DECLINED;
    }
    if (!pt_parse_args(r, &a)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "proc_test: bad query string '%s'", r->args);
        return HTTP_BAD_REQUEST;
    }
    if (a.read == 1 && (rc = pt_read_body(r, &received, &sum)) != OK) {
        return rc;
    }
    if (a.swapfd_ms) {
        pt_swap_fd(r, a.swapfd_ms);
    }
    start = apr_time_now();

    if (a.status >= 400) {
        pt_busy_sleep(r, &a, start, a.sleep_ms);
        return (int)a.status;
    }

    r->status = (int)a.status;
    ap_set_content_type(r, "text/plain");
    apr_table_setn(r->headers_out, "X-Received",
                   apr_off_t_toa(r->pool, received));
    apr_table_setn(r->headers_out, "X-Received-Sum",
                   apr_psprintf(r->pool, "%u", sum));
    /* subrequests copy headers_in: only the main request runs X-Sub */
    sub = r->main ? NULL : apr_table_get(r->headers_in, "X-Sub");
    if (a.cl && !sub) {
        ap_set_content_length(r, (apr_off_t)a.len);
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    if (a.hold_ms) {
        apr_int64_t *ms = apr_palloc(r->pool, sizeof(*ms));
        *ms = a.hold_ms;
        ap_add_output_filter_handle(pt_hold_handle, ms, r, r->connection);
    }
    if (a.rputs) {
        pt_busy_sleep(r, &a, start, a.sleep_ms);
        return pt_rputs_body(r, &a);
    }

    if (a.read == 2) {
        /* The response is on the wire before the request body is read. */
        if (pt_write_body(r, bb, 0, a.len) != APR_SUCCESS) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        APR_BRIGADE_INSERT_TAIL(bb,
            apr_bucket_flush_create(r->connection->bucket_alloc));
        if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
            return AP_FILTER_ERROR;
        }
        apr_brigade_cleanup(bb);
        pt_read_body(r, &received, &sum);
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "proc_test: read %" APR_OFF_T_FMT " body bytes after "
                      "the response", received);
        pt_sleep_until(apr_time_now(), a.sleep_ms);
        APR_BRIGADE_INSERT_TAIL(bb,
            apr_bucket_eos_create(r->connection->bucket_alloc));
        return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS
               ? OK : AP_FILTER_ERROR;
    }

    if (sub && (rc = pt_run_sub(r, sub)) != OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "proc_test: subrequest %s gave %d", sub, rc);
    }
    if (a.early > 0) {
        if (pt_write_body(r, bb, 0, a.early) != APR_SUCCESS) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        APR_BRIGADE_INSERT_TAIL(bb,
            apr_bucket_flush_create(r->connection->bucket_alloc));
        if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
            return AP_FILTER_ERROR;
        }
        apr_brigade_cleanup(bb);
    }
    if (a.interim_ms >= 0 && a.interim_ms <= a.sleep_ms) {
        pt_sleep_until(start, a.interim_ms);
        pt_send_103(r);
    }
    pt_busy_sleep(r, &a, start, a.sleep_ms);

    if (a.fail) {
        return (int)a.fail;
    }
    if (!r->main && !r->prev && apr_table_get(r->headers_in, "X-Redirect")) {
        ap_internal_redirect(apr_table_get(r->headers_in, "X-Redirect"), r);
        return OK;
    }
    if (!a.cl && a.len - a.early > 1) {
        /* Half the body in a pass of its own: httpd cannot compute a
         * Content-Length then and chunks the response. */
        mid = a.early + (a.len - a.early) / 2;
        if (pt_write_body(r, bb, a.early, mid) != APR_SUCCESS) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
            return AP_FILTER_ERROR;
        }
        apr_brigade_cleanup(bb);
        a.early = mid;
    }
    if (pt_write_body(r, bb, a.early, a.len) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    APR_BRIGADE_INSERT_TAIL(bb,
        apr_bucket_eos_create(r->connection->bucket_alloc));
    if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
        return AP_FILTER_ERROR;
    }
    return OK;
}

static void pt_register_hooks(apr_pool_t *p)
{
    ap_hook_handler(pt_handler, NULL, NULL, APR_HOOK_MIDDLE);
    pt_hold_handle = ap_register_output_filter("PT_HOLD", pt_hold_filter,
                                               NULL, AP_FTYPE_RESOURCE);
}

AP_DECLARE_MODULE(proc_test) = {
    STANDARD20_MODULE_STUFF,
    NULL,               /* create per-directory config */
    NULL,               /* merge per-directory config */
    NULL,               /* create per-server config */
    NULL,               /* merge per-server config */
    NULL,               /* command table */
    pt_register_hooks   /* register hooks */
};
