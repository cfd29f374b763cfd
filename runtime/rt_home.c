/* rt_home.c - finding the directory a chorus binary reads its files from
 * (see rt_home.h for the order and why). */
#include "rt_home.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* A malloc'd printf, or NULL when out of memory. */
static char *rt__format(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static int rt__set(const char *s)
{
    return s != NULL && *s != '\0';
}

/* Is dir a home (its marker file readable)? */
static int rt__is_home(const char *dir)
{
    char *marker = rt__format("%s/%s", dir, RT_HOME_MARKER);
    int ok = marker != NULL && access(marker, R_OK) == 0;
    free(marker);
    return ok;
}

/* dir as a malloc'd absolute path without "..", or a copy when it cannot
 * be resolved. */
static char *rt__absolute(const char *dir)
{
    char *abs = realpath(dir, NULL);
    return abs != NULL ? abs : strdup(dir);
}

/* The install layout's candidate: exe's directory joined with exe_rel. */
static char *rt__beside_exe(const rt_home_search_t *s)
{
    const char *slash;
    if (!rt__set(s->exe) || !rt__set(s->exe_rel))
        return NULL;
    slash = strrchr(s->exe, '/');
    if (slash == NULL)
        return NULL;
    return rt__format("%.*s/%s", (int)(slash - s->exe), s->exe, s->exe_rel);
}

char *rt_home_find(const rt_home_search_t *s, char **err)
{
    char *beside, *found, *abs;
    *err = NULL;
    if (rt__set(s->env)) {
        if (rt__is_home(s->env))
            return rt__absolute(s->env);
        *err = rt__format("CHORUS_HOME=%s is not a Chorus home (it has no "
                          "%s); set it to the directory that holds lua/chorus, "
                          "or unset it",
                          s->env, RT_HOME_MARKER);
        return NULL;
    }
    beside = rt__beside_exe(s);
    if (beside != NULL && rt__is_home(beside)) {
        found = rt__absolute(beside);
        free(beside);
        return found;
    }
    if (rt__set(s->build) && rt__is_home(s->build)) {
        free(beside);
        return rt__absolute(s->build);
    }
    abs = beside != NULL ? rt__absolute(beside) : NULL;
    *err = rt__format(
        "cannot find Chorus's files (%s): not in %s (the install layout "
        "beside the executable %s) nor in %s (the source tree it was built "
        "from); set CHORUS_HOME to the directory that holds lua/chorus",
        RT_HOME_MARKER, abs != NULL ? abs : "-",
        rt__set(s->exe) ? s->exe : "(unknown)",
        rt__set(s->build) ? s->build : "-");
    free(abs);
    free(beside);
    return NULL;
}

char *rt_home_exe(void)
{
    /* uv_exepath truncates silently: a full buffer means it may have. */
    size_t cap = 256;
    for (;;) {
        size_t len = cap;
        char *buf = malloc(cap);
        if (buf == NULL)
            return NULL;
        if (uv_exepath(buf, &len) != 0) {
            free(buf);
            return NULL;
        }
        if (len + 1 < cap)
            return buf;
        free(buf);
        if (cap >= 65536)
            return NULL;
        cap *= 4;
    }
}
