/* rt_err.c - every failure an engine or a binding reports (see rt_err.h). */
#include "rt_err.h"

#include <strings.h>

static const char *const rt__words[RT_ERR_COUNT] = {
#define RT__ERR_WORD(name, word) word,
    RT_ERR_MAP(RT__ERR_WORD)
#undef RT__ERR_WORD
};

const char *rt_err_word(int code)
{
    int i = rt_err_index(code);
    return i < 0 ? "unknown error" : rt__words[i];
}

const char *rt_err_detail(int code, const char *detail)
{
    if (detail == NULL || *detail == '\0' ||
        strcasecmp(detail, rt_err_word(code)) == 0)
        return NULL;
    return detail;
}
