/* rt_lua_redis.h - the Lua face of the Redis engine (rt_redis.h). */
#ifndef RT_LUA_REDIS_H
#define RT_LUA_REDIS_H

#include "rt_lua_sched.h"

/* Adds redis_open, redis_command, redis_pipeline, redis_subscribe,
 * redis_unsubscribe, redis_next, redis_close and redis_info to the table
 * at absolute index table. chorus.db.redis wraps them into the friendly API;
 * rt_lua_redis.c documents each. */
void rt_lua_redis_open(lua_State *L, rt_lua_sched_t *ls, int table);

#endif
