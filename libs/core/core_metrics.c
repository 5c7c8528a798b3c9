#include "core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum metric_kind { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_kind;

#define METRIC_MAX_LABELS 8

typedef struct metric_series {
    uint64_t hash;
    char **values; /* nlabels strings */
    double value;  /* counter/gauge value; histogram sum */
    uint64_t count;
    uint64_t *bucket_counts; /* histogram: nbuckets cumulative-at-render counts */
} metric_series;

struct core_metric {
    char *name;
    char *help;
    metric_kind kind;
    size_t nlabels;
    char *labels[METRIC_MAX_LABELS];
    double *buckets;
    size_t nbuckets;
    metric_series *series;
    size_t nseries, capseries;
    core_metric *next;
};

struct core_metrics {
    core_metric *first, *last;
};

const double core_metric_default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5,   1,    2.5,   5,    10};
const size_t core_metric_default_nbuckets =
    sizeof core_metric_default_buckets / sizeof *core_metric_default_buckets;

core_metrics *core_metrics_new(void)
{
    return core_xcalloc(1, sizeof(core_metrics));
}

core_metrics *core_metrics_default(void)
{
    static core_metrics *reg;
    if (!reg) reg = core_metrics_new();
    return reg;
}

static void metric_free(core_metric *m)
{
    for (size_t i = 0; i < m->nseries; i++) {
        for (size_t j = 0; j < m->nlabels; j++)
            free(m->series[i].values[j]);
        free(m->series[i].values);
        free(m->series[i].bucket_counts);
    }
    free(m->series);
    for (size_t j = 0; j < m->nlabels; j++)
        free(m->labels[j]);
    free(m->buckets);
    free(m->name);
    free(m->help);
    free(m);
}

void core_metrics_free(core_metrics *reg)
{
    if (!reg) return;
    core_metric *m = reg->first;
    while (m) {
        core_metric *next = m->next;
        metric_free(m);
        m = next;
    }
    free(reg);
}

static core_metric *metric_register(core_metrics *reg, const char *name, const char *help,
                                    const char *label_names, metric_kind kind)
{
    for (core_metric *m = reg->first; m; m = m->next)
        if (strcmp(m->name, name) == 0) return m->kind == kind ? m : NULL;
    core_metric *m = core_xcalloc(1, sizeof *m);
    m->name = core_xstrdup(name);
    m->help = core_xstrdup(help);
    m->kind = kind;
    if (label_names && *label_names) {
        const char *p = label_names;
        while (*p && m->nlabels < METRIC_MAX_LABELS) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            m->labels[m->nlabels] = core_xcalloc(len + 1, 1);
            memcpy(m->labels[m->nlabels], p, len);
            m->nlabels++;
            p += len + (comma ? 1 : 0);
        }
    }
    if (reg->last)
        reg->last->next = m;
    else
        reg->first = m;
    reg->last = m;
    return m;
}

core_metric *core_metric_counter(core_metrics *reg, const char *name, const char *help,
                                 const char *label_names)
{
    return metric_register(reg, name, help, label_names, METRIC_COUNTER);
}

core_metric *core_metric_gauge(core_metrics *reg, const char *name, const char *help,
                               const char *label_names)
{
    return metric_register(reg, name, help, label_names, METRIC_GAUGE);
}

core_metric *core_metric_histogram(core_metrics *reg, const char *name, const char *help,
                                   const char *label_names, const double *buckets, size_t nbuckets)
{
    core_metric *m = metric_register(reg, name, help, label_names, METRIC_HISTOGRAM);
    if (m && !m->buckets) {
        if (!buckets) {
            buckets = core_metric_default_buckets;
            nbuckets = core_metric_default_nbuckets;
        }
        m->buckets = core_xcalloc(nbuckets, sizeof(double));
        memcpy(m->buckets, buckets, nbuckets * sizeof(double));
        m->nbuckets = nbuckets;
    }
    return m;
}

static uint64_t metric_hash(const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const char *p = values[i]; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator, so ("ab","c") != ("a","bc") */
    }
    return h;
}

static metric_series *metric_find(core_metric *m, va_list ap, bool create)
{
    const char *values[METRIC_MAX_LABELS];
    for (size_t i = 0; i < m->nlabels; i++) {
        const char *v = va_arg(ap, const char *);
        values[i] = v ? v : "";
    }
    uint64_t h = metric_hash(values, m->nlabels);
    for (size_t i = 0; i < m->nseries; i++) {
        metric_series *s = &m->series[i];
        if (s->hash != h) continue;
        bool same = true;
        for (size_t j = 0; j < m->nlabels && same; j++)
            same = strcmp(s->values[j], values[j]) == 0;
        if (same) return s;
    }
    if (!create) return NULL;
    if (m->nseries == m->capseries) {
        m->capseries = m->capseries ? m->capseries * 2 : 4;
        metric_series *p = realloc(m->series, m->capseries * sizeof *p);
        if (!p) abort();
        m->series = p;
    }
    metric_series *s = &m->series[m->nseries++];
    memset(s, 0, sizeof *s);
    s->hash = h;
    s->values = core_xcalloc(m->nlabels, sizeof(char *));
    for (size_t j = 0; j < m->nlabels; j++)
        s->values[j] = core_xstrdup(values[j]);
    if (m->kind == METRIC_HISTOGRAM) s->bucket_counts = core_xcalloc(m->nbuckets, 8);
    return s;
}

void core_counter_add(core_metric *m, double v, ...)
{
    if (!m || !(v >= 0)) return; /* counters only go up */
    va_list ap;
    va_start(ap, v);
    metric_find(m, ap, true)->value += v;
    va_end(ap);
}

void core_gauge_set(core_metric *m, double v, ...)
{
    if (!m) return;
    va_list ap;
    va_start(ap, v);
    metric_find(m, ap, true)->value = v;
    va_end(ap);
}

void core_gauge_add(core_metric *m, double v, ...)
{
    if (!m) return;
    va_list ap;
    va_start(ap, v);
    metric_find(m, ap, true)->value += v;
    va_end(ap);
}

void core_histogram_observe(core_metric *m, double v, ...)
{
    if (!m || m->kind != METRIC_HISTOGRAM || isnan(v)) return;
    va_list ap;
    va_start(ap, v);
    metric_series *s = metric_find(m, ap, true);
    va_end(ap);
    for (size_t i = 0; i < m->nbuckets; i++)
        if (v <= m->buckets[i]) s->bucket_counts[i]++;
    s->count++;
    s->value += v;
}

void core_histogram_observe_n(core_metric *m, double v, uint64_t n, ...)
{
    if (!m || m->kind != METRIC_HISTOGRAM || isnan(v) || n == 0) return;
    va_list ap;
    va_start(ap, n);
    metric_series *s = metric_find(m, ap, true);
    va_end(ap);
    for (size_t i = 0; i < m->nbuckets; i++)
        if (v <= m->buckets[i]) s->bucket_counts[i] += n;
    s->count += n;
    s->value += v * (double)n;
}

double core_metric_value(core_metric *m, ...)
{
    if (!m) return NAN;
    va_list ap;
    va_start(ap, m);
    metric_series *s = metric_find(m, ap, false);
    va_end(ap);
    if (!s) return NAN;
    return m->kind == METRIC_HISTOGRAM ? (double)s->count : s->value;
}

static void metric_put_number(core_buf *out, double v)
{
    if (isnan(v))
        core_buf_puts(out, "NaN");
    else if (isinf(v))
        core_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(long long)v && fabs(v) < 1e15)
        core_buf_printf(out, "%lld", (long long)v);
    else {
        /* Shortest of %.15g / %.17g that reads back exactly: 0.1 stays "0.1". */
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%.15g", v);
        if (strtod(tmp, NULL) != v) snprintf(tmp, sizeof tmp, "%.17g", v);
        core_buf_puts(out, tmp);
    }
}

/* Label values escape backslash, double quote and newline; HELP escapes backslash and newline. */
static void metric_put_escaped(core_buf *out, const char *s, bool quotes)
{
    for (; *s; s++) {
        if (*s == '\\')
            core_buf_puts(out, "\\\\");
        else if (*s == '\n')
            core_buf_puts(out, "\\n");
        else if (*s == '"' && quotes)
            core_buf_puts(out, "\\\"");
        else
            core_buf_append(out, s, 1);
    }
}

static void metric_put_labels(core_buf *out, const core_metric *m, const metric_series *s,
                              const char *extra_name, const char *extra_value)
{
    if (m->nlabels == 0 && !extra_name) return;
    core_buf_puts(out, "{");
    for (size_t j = 0; j < m->nlabels; j++) {
        if (j) core_buf_puts(out, ",");
        core_buf_printf(out, "%s=\"", m->labels[j]);
        metric_put_escaped(out, s->values[j], true);
        core_buf_puts(out, "\"");
    }
    if (extra_name)
        core_buf_printf(out, "%s%s=\"%s\"", m->nlabels ? "," : "", extra_name, extra_value);
    core_buf_puts(out, "}");
}

void core_metrics_render(core_metrics *reg, core_buf *out)
{
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    for (core_metric *m = reg->first; m; m = m->next) {
        core_buf_printf(out, "# HELP %s ", m->name);
        metric_put_escaped(out, m->help, false);
        core_buf_printf(out, "\n# TYPE %s %s\n", m->name, kinds[m->kind]);
        for (size_t i = 0; i < m->nseries; i++) {
            const metric_series *s = &m->series[i];
            if (m->kind != METRIC_HISTOGRAM) {
                core_buf_puts(out, m->name);
                metric_put_labels(out, m, s, NULL, NULL);
                core_buf_puts(out, " ");
                metric_put_number(out, s->value);
                core_buf_puts(out, "\n");
                continue;
            }
            for (size_t b = 0; b < m->nbuckets; b++) {
                core_buf t = {0};
                metric_put_number(&t, m->buckets[b]);
                core_buf_printf(out, "%s_bucket", m->name);
                metric_put_labels(out, m, s, "le", t.data);
                core_buf_printf(out, " %llu\n", (unsigned long long)s->bucket_counts[b]);
                core_buf_free(&t);
            }
            core_buf_printf(out, "%s_bucket", m->name);
            metric_put_labels(out, m, s, "le", "+Inf");
            core_buf_printf(out, " %llu\n", (unsigned long long)s->count);
            core_buf_printf(out, "%s_sum", m->name);
            metric_put_labels(out, m, s, NULL, NULL);
            core_buf_puts(out, " ");
            metric_put_number(out, s->value);
            core_buf_printf(out, "\n%s_count", m->name);
            metric_put_labels(out, m, s, NULL, NULL);
            core_buf_printf(out, " %llu\n", (unsigned long long)s->count);
        }
    }
}
