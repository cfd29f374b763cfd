/* test_home.c - unit tests of the home search (rt_home.c): CHORUS_HOME
 * alone when set, the install layout beside the executable before the
 * source tree, and an error naming every place when nothing fits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_home.h"

#include "test_check.h"

static char root[] = "/tmp/chorus-test-home.XXXXXX";

static char *path(const char *rel)
{
    char *p = malloc(strlen(root) + strlen(rel) + 2);
    if (p == NULL)
        abort();
    sprintf(p, "%s/%s", root, rel);
    return p;
}

/* Makes rel/lua/chorus/cli.lua under root (a home). */
static void make_home(const char *rel)
{
    static const char *parts[] = {"", "/lua", "/lua/chorus"};
    char *dir = path(rel), *sub, *marker;
    size_t i;
    for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        sub = malloc(strlen(dir) + 16);
        if (sub == NULL)
            abort();
        sprintf(sub, "%s%s", dir, parts[i]);
        CHECK(mkdir(sub, 0755) == 0);
        free(sub);
    }
    marker = malloc(strlen(dir) + 32);
    if (marker == NULL)
        abort();
    sprintf(marker, "%s/%s", dir, RT_HOME_MARKER);
    FILE *f = fopen(marker, "w");
    CHECK(f != NULL);
    if (f != NULL)
        fclose(f);
    free(marker);
    free(dir);
}

static void mk(const char *rel)
{
    char *dir = path(rel);
    CHECK(mkdir(dir, 0755) == 0);
    free(dir);
}

static int contains(const char *s, const char *part)
{
    return s != NULL && strstr(s, part) != NULL;
}

static void test_order(void)
{
    char *exe = path("prefix/bin/chorus"), *inst = path("prefix/share/chorus");
    char *src = path("src"), *missing = path("nowhere"), *err, *home;
    rt_home_search_t s = {NULL, exe, "../share/chorus", src};

    mk("prefix");
    /* Nothing exists yet: the error names both places and the exe. */
    home = rt_home_find(&s, &err);
    CHECK(home == NULL);
    CHECK(contains(err, "cannot find Chorus's files"));
    CHECK(contains(err, "prefix/bin/../share/chorus"));
    CHECK(contains(err, exe));
    CHECK(contains(err, src));
    CHECK(contains(err, "CHORUS_HOME"));
    free(err);

    /* The source tree only. */
    make_home("src");
    home = rt_home_find(&s, &err);
    CHECK(home != NULL && strcmp(home, src) == 0);
    CHECK(err == NULL);
    free(home);

    /* The install layout wins over the source tree, as an absolute path
     * without "..". */
    mk("prefix/bin");
    mk("prefix/share");
    make_home("prefix/share/chorus");
    home = rt_home_find(&s, &err);
    CHECK(home != NULL && strcmp(home, inst) == 0);
    free(home);

    /* CHORUS_HOME wins over both. */
    s.env = src;
    home = rt_home_find(&s, &err);
    CHECK(home != NULL && strcmp(home, src) == 0);
    free(home);

    /* A CHORUS_HOME that is not a home is an error, even though others
     * exist. */
    s.env = missing;
    home = rt_home_find(&s, &err);
    CHECK(home == NULL);
    CHECK(contains(err, "CHORUS_HOME="));
    CHECK(contains(err, missing));
    CHECK(contains(err, RT_HOME_MARKER));
    free(err);

    /* An empty CHORUS_HOME counts as unset; no exe: the source tree. */
    s.env = "";
    s.exe = NULL;
    home = rt_home_find(&s, &err);
    CHECK(home != NULL && strcmp(home, src) == 0);
    free(home);

    free(exe);
    free(inst);
    free(src);
    free(missing);
}

static void test_exe(void)
{
    char *exe = rt_home_exe();
    size_t n = exe ? strlen(exe) : 0;
    CHECK(exe != NULL && exe[0] == '/');
    CHECK(n > 10 && strcmp(exe + n - 10, "/test_home") == 0);
    free(exe);
}

int main(void)
{
    char cmd[128];
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_order();
    test_exe();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "test_home: could not remove %s\n", root);
    if (test_failures) {
        fprintf(stderr, "test_home: %d checks failed\n", (int)test_failures);
        return 1;
    }
    printf("all home tests passed\n");
    return 0;
}
