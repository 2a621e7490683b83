/*
 * mod_compat_slow: make any handler slow, for mod_processing's compatibility
 * runs (compat/run-compat, compat/run-litmus). Not part of the product.
 *
 *   CompatSlow <ms>    (any context, also inside <If>; 0 = off, default)
 *
 * For every main request whose configuration has CompatSlow > 0 it inserts a
 * protocol-level output filter that sleeps <ms> milliseconds the first time
 * the response passes it, then gets out of the way. By then the handler has
 * read the request body (mod_dav reads a PUT body before it answers), so
 * mod_processing has armed, and its 102s go out during the sleep. Being a
 * protocol filter it also delays error responses (ap_send_error_response
 * keeps r->proto_output_filters), so a 404 or 412 from mod_dav is slowed as
 * well. Only the first pass sleeps: a streamed body is not slowed further.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_request.h"
#include "http_log.h"
#include "util_filter.h"
#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_time.h"

module AP_MODULE_DECLARE_DATA compat_slow_module;

#define SLOW_UNSET (-1)
#define SLOW_MAX_MS (15 * 60 * 1000)

typedef struct {
    apr_int64_t ms;
} slow_cfg;

static ap_filter_rec_t *slow_filter_handle;

static void *slow_create(apr_pool_t *p, char *dir)
{
    slow_cfg *c = apr_pcalloc(p, sizeof(*c));
    c->ms = SLOW_UNSET;
    return c;
}

static void *slow_merge(apr_pool_t *p, void *basev, void *addv)
{
    slow_cfg *base = basev, *add = addv;
    slow_cfg *c = apr_pcalloc(p, sizeof(*c));
    c->ms = add->ms != SLOW_UNSET ? add->ms : base->ms;
    return c;
}

static const char *slow_set(cmd_parms *cmd, void *dcfg, const char *arg)
{
    const char *p;
    apr_int64_t v;

    for (p = arg; apr_isdigit(*p); p++) {
    }
    if (p == arg || *p || p - arg > 9
        || (v = apr_atoi64(arg)) > SLOW_MAX_MS) {
        return "CompatSlow: milliseconds, 0 to 900000";
    }
    ((slow_cfg *)dcfg)->ms = v;
    return NULL;
}

static apr_status_t slow_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    apr_int64_t ms = *(apr_int64_t *)f->ctx;

    ap_remove_output_filter(f);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, f->r,
                  "compat_slow: sleeping %" APR_INT64_T_FMT " ms", ms);
    apr_sleep(apr_time_from_msec(ms));
    return ap_pass_brigade(f->next, bb);
}

static void slow_insert(request_rec *r)
{
    slow_cfg *c = ap_get_module_config(r->per_dir_config,
                                       &compat_slow_module);
    apr_int64_t *ctx;

    /* Once per request: the error path runs the insert hooks again. */
    if (r->main || c->ms <= 0
        || ap_get_module_config(r->request_config, &compat_slow_module)) {
        return;
    }
    ctx = apr_palloc(r->pool, sizeof(*ctx));
    *ctx = c->ms;
    ap_set_module_config(r->request_config, &compat_slow_module, ctx);
    ap_add_output_filter_handle(slow_filter_handle, ctx, r, r->connection);
}

static void slow_hooks(apr_pool_t *p)
{
    slow_filter_handle = ap_register_output_filter("COMPAT_SLOW", slow_filter,
                                                   NULL, AP_FTYPE_PROTOCOL);
    ap_hook_insert_filter(slow_insert, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(slow_insert, NULL, NULL, APR_HOOK_MIDDLE);
}

static const command_rec slow_cmds[] = {
    AP_INIT_TAKE1("CompatSlow", slow_set, NULL, OR_ALL | ACCESS_CONF
                  | RSRC_CONF, "milliseconds to delay each response"),
    {NULL}
};

AP_DECLARE_MODULE(compat_slow) = {
    STANDARD20_MODULE_STUFF,
    slow_create,
    slow_merge,
    NULL,
    NULL,
    slow_cmds,
    slow_hooks
};
