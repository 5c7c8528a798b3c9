#include "core.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t core_now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t core_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void core_format_rfc3339(int64_t unix_ms, char out[CORE_RFC3339_LEN + 1])
{
    int64_t secs = unix_ms / 1000;
    int ms = (int)(unix_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    /* Written digit by digit: fixed width, and no format-truncation guesswork. */
    int fields[7] = {(tm.tm_year + 1900) % 10000,
                     tm.tm_mon + 1,
                     tm.tm_mday,
                     tm.tm_hour,
                     tm.tm_min,
                     tm.tm_sec,
                     ms};
    static const int widths[7] = {4, 2, 2, 2, 2, 2, 3};
    static const char seps[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    size_t o = 0;
    for (int f = 0; f < 7; f++) {
        for (int d = widths[f] - 1, v = fields[f]; d >= 0; d--, v /= 10)
            out[o + (size_t)d] = (char)('0' + v % 10);
        o += (size_t)widths[f];
        out[o++] = seps[f];
    }
    out[o] = '\0';
}

static bool clock_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool core_parse_rfc3339(const char *s, int64_t *unix_ms)
{
    int y, mo, d, h, mi, se;
    if (strlen(s) < 20) return false;
    if (!clock_digits(s, 4, &y) || s[4] != '-' || !clock_digits(s + 5, 2, &mo) || s[7] != '-' ||
        !clock_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !clock_digits(s + 11, 2, &h) || s[13] != ':' || !clock_digits(s + 14, 2, &mi) ||
        s[16] != ':' || !clock_digits(s + 17, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3) ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0) return false;
        for (int i = digits; i < 3; i++)
            ms *= 10;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!clock_digits(p + 1, 2, &oh) || p[3] != ':' || !clock_digits(p + 4, 2, &om))
            return false;
        offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0') return false;
    /* Days from civil (Howard Hinnant's algorithm): no timezone state involved. */
    int yy = y - (mo <= 2);
    int era = (yy >= 0 ? yy : yy - 399) / 400;
    unsigned yoe = (unsigned)(yy - era * 400);
    unsigned doy = (unsigned)((153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1);
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + (int64_t)doe - 719468;
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - (int64_t)offset_min * 60;
    *unix_ms = secs * 1000 + ms;
    return true;
}

int64_t core_backoff_ms(unsigned attempt, int64_t base_ms, int64_t max_ms)
{
    if (base_ms <= 0 || max_ms <= 0) return 0;
    int64_t cap = base_ms;
    for (unsigned i = 0; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms) cap = max_ms;
    uint64_t r;
    core_random_bytes(&r, sizeof r);
    return (int64_t)(r % (uint64_t)(cap + 1));
}
