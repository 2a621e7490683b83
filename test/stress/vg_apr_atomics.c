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
 * vg_apr_atomics: tells helgrind / drd that APR's 32-bit and pointer atomics
 * synchronise, for test/stress/run-racecheck (issue 4).
 *
 * httpd's worker and event MPMs hand transaction pools (and the memory of
 * every connection and request in them) between threads through lock-free
 * lists built on apr_atomic_casptr() (server/mpm_fdqueue.c: recycled pools,
 * idle worker counts). Neither tool understands atomic instructions, so it
 * sees no happens-before edge there and reports every later use of the
 * recycled memory as a race with its previous user, in whatever code that
 * is: httpd's, mod_ssl's, or this module's record in c->pool.
 *
 * Preloaded into apache2 under valgrind, this wraps (valgrind function
 * wrapping, no change to APR) each 32-bit and pointer atomic of libapr so
 * that it is a release and an acquire on its address: ANNOTATE_HAPPENS_
 * BEFORE(mem), the real operation, ANNOTATE_HAPPENS_AFTER(mem). That is
 * what these operations are (full barriers). The 64-bit ones are left
 * alone on purpose: mod_processing uses apr_atomic_add64/sub64/read64 for
 * its status counters from the worker and the watchdog thread, and an edge
 * through a counter could hide a real race between the two.
 *
 * Build: gcc -shared -fPIC -O1 [-DVG_DRD] -o vg_apr_atomics.so
 *        vg_apr_atomics.c
 */

#include <stdint.h>

#include <valgrind/valgrind.h>
#ifdef VG_DRD
#include <valgrind/drd.h>
#else
#include <valgrind/helgrind.h>
#endif

/* Valgrind Z-encoding of the soname pattern "libapr-1.so*". */
#define APR_SO libaprZh1ZdsoZa

#define SYNC_BEFORE(mem) ANNOTATE_HAPPENS_BEFORE((void *)(mem))
#define SYNC_AFTER(mem)  ANNOTATE_HAPPENS_AFTER((void *)(mem))

typedef uint32_t u32;

void *I_WRAP_SONAME_FNNAME_ZU(APR_SO, apr_atomic_casptr)(volatile void **mem,
                                                        void *with,
                                                        const void *cmp);
void *I_WRAP_SONAME_FNNAME_ZU(APR_SO, apr_atomic_casptr)(volatile void **mem,
                                                        void *with,
                                                        const void *cmp)
{
    OrigFn fn;
    void *ret;

    VALGRIND_GET_ORIG_FN(fn);
    SYNC_BEFORE(mem);
    CALL_FN_W_WWW(ret, fn, mem, with, cmp);
    SYNC_AFTER(mem);
    return ret;
}

void *I_WRAP_SONAME_FNNAME_ZU(APR_SO, apr_atomic_xchgptr)(volatile void **mem,
                                                         void *with);
void *I_WRAP_SONAME_FNNAME_ZU(APR_SO, apr_atomic_xchgptr)(volatile void **mem,
                                                         void *with)
{
    OrigFn fn;
    void *ret;

    VALGRIND_GET_ORIG_FN(fn);
    SYNC_BEFORE(mem);
    CALL_FN_W_WW(ret, fn, mem, with);
    SYNC_AFTER(mem);
    return ret;
}

/* u32 op(mem) */
#define WRAP_W_W(name)                                                    \
    u32 I_WRAP_SONAME_FNNAME_ZU(APR_SO, name)(volatile u32 *mem);         \
    u32 I_WRAP_SONAME_FNNAME_ZU(APR_SO, name)(volatile u32 *mem)          \
    {                                                                     \
        OrigFn fn;                                                        \
        unsigned long ret;                                                \
        VALGRIND_GET_ORIG_FN(fn);                                         \
        SYNC_BEFORE(mem);                                                 \
        CALL_FN_W_W(ret, fn, mem);                                        \
        SYNC_AFTER(mem);                                                  \
        return (u32)ret;                                                  \
    }

/* u32 op(mem, val) */
#define WRAP_W_WW(name)                                                   \
    u32 I_WRAP_SONAME_FNNAME_ZU(APR_SO, name)(volatile u32 *mem, u32 v);  \
    u32 I_WRAP_SONAME_FNNAME_ZU(APR_SO, name)(volatile u32 *mem, u32 v)   \
    {                                                                     \
        OrigFn fn;                                                        \
        unsigned long ret;                                                \
        VALGRIND_GET_ORIG_FN(fn);                                         \
        SYNC_BEFORE(mem);                                                 \
        CALL_FN_W_WW(ret, fn, mem, v);                                    \
        SYNC_AFTER(mem);                                                  \
        return (u32)ret;                                                  \
    }

/* void op(mem, val) */
#define WRAP_v_WW(name)                                                   \
    void I_WRAP_SONAME_FNNAME_ZU(APR_SO, name)(volatile u32 *mem, u32 v); \
    void I_WRAP_SONAME_FNNAME_ZU(APR_SO, name)(volatile u32 *mem, u32 v)  \
    {                                                                     \
        OrigFn fn;                                                        \
        VALGRIND_GET_ORIG_FN(fn);                                         \
        SYNC_BEFORE(mem);                                                 \
        CALL_FN_v_WW(fn, mem, v);                                         \
        SYNC_AFTER(mem);                                                  \
    }

u32 I_WRAP_SONAME_FNNAME_ZU(APR_SO, apr_atomic_cas32)(volatile u32 *mem,
                                                     u32 with, u32 cmp);
u32 I_WRAP_SONAME_FNNAME_ZU(APR_SO, apr_atomic_cas32)(volatile u32 *mem,
                                                     u32 with, u32 cmp)
{
    OrigFn fn;
    unsigned long ret;

    VALGRIND_GET_ORIG_FN(fn);
    SYNC_BEFORE(mem);
    CALL_FN_W_WWW(ret, fn, mem, with, cmp);
    SYNC_AFTER(mem);
    return (u32)ret;
}

WRAP_W_W(apr_atomic_read32)
WRAP_W_W(apr_atomic_inc32)
WRAP_W_W(apr_atomic_dec32)
WRAP_W_WW(apr_atomic_add32)
WRAP_W_WW(apr_atomic_xchg32)
WRAP_v_WW(apr_atomic_sub32)
WRAP_v_WW(apr_atomic_set32)
