/* rt_home.h - where a chorus binary finds its files, its "home": the Lua
 * tree, the built-in strategies, agents and aggregators, the migrations,
 * the web files. In order: CHORUS_HOME when set; else the install layout
 * beside the executable (<prefix>/bin/chorus -> <prefix>/share/chorus),
 * so an installed copy, or an extracted package, runs from anywhere; else
 * the source tree the binary was built from. Engine half: no Lua. */
#ifndef RT_HOME_H
#define RT_HOME_H

/* A directory is a Chorus home when it holds this file. */
#define RT_HOME_MARKER "lua/chorus/cli.lua"

/* Set by CMake from the install dirs (bindir -> datadir/chorus); this
 * fallback is the GNU layout. */
#ifndef CHORUS_EXE_REL_HOME
#define CHORUS_EXE_REL_HOME "../share/chorus"
#endif

/* What rt_home_find looks at; any field may be NULL or "" (skipped). */
typedef struct {
    const char *env;     /* CHORUS_HOME's value: used alone when set */
    const char *exe;     /* the running executable's absolute path */
    const char *exe_rel; /* the home relative to the executable's directory */
    const char *build;   /* the source tree the binary was built from */
} rt_home_search_t;

/* Returns the first usable home as a malloc'd path (made absolute when it
 * exists), or NULL with *err a malloc'd message saying every place it
 * looked in and how to fix it (*err is NULL when out of memory). A
 * CHORUS_HOME that is not a home is an error, not a reason to look
 * elsewhere: the operator asked for that one. */
char *rt_home_find(const rt_home_search_t *s, char **err);

/* The running executable's absolute path (symlinks resolved, from
 * /proc/self/exe through libuv) as a malloc'd string, or NULL. */
char *rt_home_exe(void);

#endif
