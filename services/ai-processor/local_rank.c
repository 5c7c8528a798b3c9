/*
 * TextRank (Mihalcea & Tarau 2004) over the corpus's sentences.
 *
 * Two sentences are linked with weight |shared terms| / (log(1 + |Si|) + log(1 + |Sj|)), where
 * |S| counts distinct content terms (the +1 keeps one-word sentences finite). Scores come from
 * a weighted PageRank with damping 0.85, iterated (Jacobi style) until no score moves by more
 * than LOCAL_CONVERGENCE_EPS or LOCAL_MAX_ITERATIONS have run; its teleport favours sentences
 * that several sources repeat. Each score is then multiplied by 1 + QUERY_BOOST x the
 * sentence's share of words from the title, topic and instructions.
 *
 * Determinism: every loop runs in index order (edges of a row by ascending neighbour), nothing
 * depends on hash order, and scores are compared after rounding to 1e-9, so sentences whose
 * scores differ only by floating-point noise tie, and ties go to source order.
 */
#include "local_gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A sentence made only of query words scores up to about 1 + QUERY_BOOST times more. */
#define QUERY_BOOST 2.0

static int64_t rounded(double score)
{
    return llround(score * 1e9);
}

static int compare_ids(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

typedef struct ranked {
    int64_t key; /* rounded score */
    uint32_t index;
} ranked;

/* Best first, then source order; no two entries compare equal, so qsort's instability does
 * not matter. */
static int compare_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

typedef struct graph {
    size_t *row_first; /* edges of sentence i: [row_first[i], row_first[i + 1]) */
    uint32_t *neighbour;
    float *weight;
    size_t nedges, cap;
} graph;

static void graph_push(graph *g, uint32_t j, float w)
{
    if (g->nedges == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1024;
        g->neighbour = realloc(g->neighbour, g->cap * sizeof *g->neighbour);
        g->weight = realloc(g->weight, g->cap * sizeof *g->weight);
        if (!g->neighbour || !g->weight) abort();
    }
    g->neighbour[g->nedges] = j;
    g->weight[g->nedges] = w;
    g->nedges++;
}

/* Builds the similarity graph through an inverted index, so that sentences sharing no term
 * cost nothing. */
static void build_graph(const local_corpus *c, graph *g)
{
    size_t n = c->nsentences;
    size_t *posting_first = core_xcalloc(c->nterms + 1, sizeof *posting_first);
    for (size_t i = 0; i < n; i++) {
        const uint32_t *terms = local_sentence_terms(c, &c->sentences[i]);
        for (uint32_t k = 0; k < c->sentences[i].nterms; k++)
            posting_first[terms[k] + 1]++;
    }
    for (size_t t = 0; t < c->nterms; t++)
        posting_first[t + 1] += posting_first[t];
    uint32_t *postings = core_xcalloc(posting_first[c->nterms], sizeof *postings);
    size_t *fill = core_xcalloc(c->nterms, sizeof *fill);
    for (size_t i = 0; i < n; i++) {
        const uint32_t *terms = local_sentence_terms(c, &c->sentences[i]);
        for (uint32_t k = 0; k < c->sentences[i].nterms; k++) {
            uint32_t t = terms[k];
            postings[posting_first[t] + fill[t]++] = (uint32_t)i;
        }
    }

    uint32_t *overlap = core_xcalloc(n, sizeof *overlap);
    uint32_t *touched = core_xcalloc(n, sizeof *touched);
    g->row_first = core_xcalloc(n + 1, sizeof *g->row_first);
    for (size_t i = 0; i < n; i++) {
        const local_sentence *si = &c->sentences[i];
        const uint32_t *terms = local_sentence_terms(c, si);
        size_t ntouched = 0;
        for (uint32_t k = 0; k < si->nterms; k++) {
            uint32_t t = terms[k];
            for (size_t p = posting_first[t]; p < posting_first[t + 1]; p++) {
                uint32_t j = postings[p];
                if (j == i) continue;
                if (overlap[j]++ == 0) touched[ntouched++] = j;
            }
        }
        /* neighbours in ascending order, so every sum below runs in one fixed order */
        if (ntouched > 1) qsort(touched, ntouched, sizeof *touched, compare_ids);
        for (size_t k = 0; k < ntouched; k++) {
            uint32_t j = touched[k];
            double norm = log(1.0 + si->nterms) + log(1.0 + c->sentences[j].nterms);
            graph_push(g, j, (float)(overlap[j] / norm));
            overlap[j] = 0;
        }
        g->row_first[i + 1] = g->nedges;
    }
    free(overlap);
    free(touched);
    free(postings);
    free(posting_first);
    free(fill);
}

/* Teleport shares, mean 1: a sentence that several sources repeat is visited more. */
static void teleport_bias(const local_corpus *c, double *bias)
{
    size_t n = c->nsentences;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned repeats = c->sentences[i].duplicates < 4 ? c->sentences[i].duplicates : 4;
        bias[i] = 1.0 + 0.5 * repeats;
        total += bias[i];
    }
    for (size_t i = 0; i < n; i++)
        bias[i] *= (double)n / total;
}

/* How much a sentence is about the brief: its query words (title and topic 1, instructions
 * 0.5), normalised by its length as the similarity is. */
static double query_match(const local_corpus *c, const local_sentence *s)
{
    const uint32_t *terms = local_sentence_terms(c, s);
    double match = 0;
    for (uint32_t k = 0; k < s->nterms; k++)
        match += c->terms[terms[k]].query_weight;
    return match / (1.0 + log(1.0 + s->nterms));
}

void local_rank(local_corpus *c)
{
    size_t n = c->nsentences;
    graph g = {0};
    build_graph(c, &g);
    double *bias = core_xcalloc(n, sizeof *bias);
    teleport_bias(c, bias);
    double *out_weight = core_xcalloc(n, sizeof *out_weight);
    for (size_t i = 0; i < n; i++)
        for (size_t e = g.row_first[i]; e < g.row_first[i + 1]; e++)
            out_weight[i] += g.weight[e];

    double *score = core_xcalloc(n, sizeof *score);
    double *next = core_xcalloc(n, sizeof *next);
    for (size_t i = 0; i < n; i++)
        score[i] = 1.0;
    for (int iteration = 0; iteration < LOCAL_MAX_ITERATIONS; iteration++) {
        double largest_change = 0;
        for (size_t i = 0; i < n; i++) {
            /* the graph is symmetric: row i lists every j that links to i */
            double inflow = 0;
            for (size_t e = g.row_first[i]; e < g.row_first[i + 1]; e++) {
                uint32_t j = g.neighbour[e];
                inflow += g.weight[e] / out_weight[j] * score[j];
            }
            next[i] = (1.0 - LOCAL_DAMPING) * bias[i] + LOCAL_DAMPING * inflow;
            double change = fabs(next[i] - score[i]);
            if (change > largest_change) largest_change = change;
        }
        double *swap = score;
        score = next;
        next = swap;
        if (largest_change < LOCAL_CONVERGENCE_EPS) break;
    }
    /* The brief decides what the piece is about, so it scales the centrality found above. */
    for (size_t i = 0; i < n; i++) {
        score[i] *= 1.0 + QUERY_BOOST * query_match(c, &c->sentences[i]);
        c->sentences[i].score = score[i];
    }

    free(c->order);
    c->order = core_xcalloc(n, sizeof *c->order);
    ranked *by_score = core_xcalloc(n, sizeof *by_score);
    for (size_t i = 0; i < n; i++)
        by_score[i] = (ranked){rounded(score[i]), (uint32_t)i};
    qsort(by_score, n, sizeof *by_score, compare_ranked);
    for (size_t i = 0; i < n; i++)
        c->order[i] = by_score[i].index;
    free(by_score);

    /* A keyword weighs what the sentences holding it weigh (repeats included). */
    for (size_t t = 0; t < c->nterms; t++)
        c->terms[t].weight = 0;
    for (size_t i = 0; i < n; i++) {
        const local_sentence *s = &c->sentences[i];
        const uint32_t *terms = local_sentence_terms(c, s);
        for (uint32_t k = 0; k < s->nterms; k++)
            c->terms[terms[k]].weight += s->score * (1 + s->duplicates);
    }
    for (size_t t = 0; t < c->nterms; t++)
        c->terms[t].weight *= 1.0 + c->terms[t].query_weight;

    free(score);
    free(next);
    free(bias);
    free(out_weight);
    free(g.row_first);
    free(g.neighbour);
    free(g.weight);
}

double local_jaccard(const local_corpus *c, const local_sentence *a, const local_sentence *b)
{
    const uint32_t *x = local_sentence_terms(c, a), *y = local_sentence_terms(c, b);
    uint32_t i = 0, j = 0, shared = 0;
    while (i < a->nterms && j < b->nterms) {
        if (x[i] == y[j]) {
            shared++;
            i++;
            j++;
        } else if (x[i] < y[j]) {
            i++;
        } else {
            j++;
        }
    }
    uint32_t both = a->nterms + b->nterms - shared;
    return both ? (double)shared / both : 0.0;
}

/* Numbers and very short words make poor keywords. */
static bool keyword_candidate(const local_term *t)
{
    size_t len = strlen(t->surface);
    bool ascii = true, digits = true;
    for (size_t k = 0; k < len; k++) {
        unsigned char ch = (unsigned char)t->surface[k];
        if (ch >= 0x80) ascii = false;
        if (ch < '0' || ch > '9') digits = false;
    }
    return !digits && (!ascii || len >= 3);
}

size_t local_top_keywords(const local_corpus *c, size_t source, size_t k, uint32_t *out)
{
    double *weight = core_xcalloc(c->nterms, sizeof *weight);
    if (source == SIZE_MAX) {
        for (size_t t = 0; t < c->nterms; t++)
            weight[t] = c->terms[t].weight;
    } else {
        for (size_t i = 0; i < c->nsentences; i++) {
            const local_sentence *s = &c->sentences[i];
            if (s->source != source) continue;
            const uint32_t *terms = local_sentence_terms(c, s);
            for (uint32_t m = 0; m < s->nterms; m++)
                weight[terms[m]] += s->score;
        }
    }
    size_t found = 0;
    while (found < k) {
        size_t best = SIZE_MAX;
        for (size_t t = 0; t < c->nterms; t++) {
            if (weight[t] <= 0 || !keyword_candidate(&c->terms[t])) continue;
            if (best == SIZE_MAX || rounded(weight[t]) > rounded(weight[best])) best = t;
        }
        if (best == SIZE_MAX) break;
        out[found++] = (uint32_t)best;
        weight[best] = 0;
    }
    free(weight);
    return found;
}
