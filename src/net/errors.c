/* Status strings, the thread-local failure detail, and the allocation wrappers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "net/internal.h"

static _Thread_local char errbuf[512];

const char *nnd_strerror(nnd_status s)
{
    switch (s) {
    case NND_OK: return "success";
    case NND_EINVAL: return "invalid argument";
    case NND_EDIM: return "dimension mismatch or size overflow";
    case NND_ENOMEM: return "out of memory";
    case NND_EIO: return "input/output error";
    case NND_EFORMAT: return "malformed file";
    case NND_EUNSUPPORTED: return "unsupported feature";
    }
    return "unknown status code";
}

const char *nnd_errmsg(void) { return errbuf; }

const char *nnd_version(void) { return "0.1.0"; }

nnd_status nnd__fail(nnd_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return s;
}

nnd_status nnd__builder_status(nnd_status s, char *msg, size_t size)
{
    nnd_status r = s == NND_ENOMEM || s == NND_EUNSUPPORTED ? s : NND_EFORMAT;
    snprintf(msg, size, "%s", errbuf[0] ? errbuf : nnd_strerror(r));
    return r;
}

/* Fault injection for the reliability tests: when >= 0, the allocation that brings the
 * thread's count to zero fails. Thread-local, so it is no global state shared between threads. */
static _Thread_local long alloc_countdown = -1;

void nnd__set_alloc_failure(long k) { alloc_countdown = k; }

static int alloc_should_fail(void)
{
    if (alloc_countdown < 0)
        return 0;
    if (alloc_countdown == 0) {
        alloc_countdown = -1;
        return 1;
    }
    alloc_countdown--;
    return 0;
}

void *nnd__malloc(size_t n, size_t size)
{
    size_t bytes;
    if (!nnd__mul(n, size, &bytes) || alloc_should_fail())
        return NULL;
    return malloc(bytes ? bytes : 1);
}

void *nnd__calloc(size_t n, size_t size)
{
    size_t bytes;
    if (!nnd__mul(n, size, &bytes) || alloc_should_fail())
        return NULL;
    return calloc(bytes ? n : 1, bytes ? size : 1);
}

void nnd__free(void *p) { free(p); }
