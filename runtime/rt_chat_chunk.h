/* rt_chat_chunk.h - the fields of a streamed chat completion chunk (an
 * OpenAI-compatible "chat.completion.chunk" event's JSON) read straight
 * from its text: choices[0].delta.content, choices[0].finish_reason and
 * model, without building the document as Lua tables.
 *
 * Why: a model's answer streams as one such event per token or so, and
 * decoding each whole (lua-cjson: a table per object, a string per key
 * and value, then chorus.json's walk for out-of-range numbers) was the
 * largest part of what a streamed piece cost the server (~19k of ~70k
 * instructions a piece, bench/RESULTS.md, sitting 15).
 *
 * It answers only when it is sure to agree with a whole decode through
 * chorus.json (lua-cjson 2.1.0 as configured there): the text must be one
 * strictly valid JSON object (RFC 8259 numbers, no NUL byte, nesting
 * within RT_CHAT_CHUNK_DEPTH, \u escapes as lua-cjson reads them), with
 * no number that overflows a double, no "error" member, a "usage" member
 * only if null, no escaped key, and none of the members it reads twice.
 * Anything else - rare in a stream: the usage chunk, an error event, a
 * malformed one - is left to the whole decode, which then says what is
 * wrong or reads what this does not. */
#ifndef RT_CHAT_CHUNK_H
#define RT_CHAT_CHUNK_H

#include <stddef.h>

#define RT_CHAT_CHUNK_DEPTH 64

/* A JSON string's bytes between its quotes, still escaped when escaped
 * is set (rt_json_unescape turns them into the string's value). */
typedef struct {
    const char *p;
    size_t n;
    int escaped;
    int present; /* the member was there, as a string */
} rt_json_span_t;

typedef struct {
    rt_json_span_t content; /* choices[0].delta.content */
    rt_json_span_t finish;  /* choices[0].finish_reason */
    rt_json_span_t model;   /* model */
} rt_chat_chunk_t;

/* 1 when the fields in out are what a whole decode would give (each
 * present only when it is a string there), 0 when the text must be
 * decoded whole. */
int rt_chat_chunk_read(const char *s, size_t n, rt_chat_chunk_t *out);

/* The value of an escaped span that rt_chat_chunk_read accepted, into dst
 * (room for span->n bytes: a value is never longer than its escaped
 * text). Returns its length. */
size_t rt_json_unescape(const rt_json_span_t *span, char *dst);

#endif
