/*
 * Internals of the local provider: deterministic extractive generation.
 *
 *   local_text.c     UTF-8 repair, sentence splitting, tokens (lowercase, stopwords, stems)
 *   local_corpus.c   sources -> sentences with term ids, duplicates merged, bounds applied
 *   local_rank.c     TextRank (biased PageRank over sentence similarity), keywords
 *   local_compose.c  the Markdown body per kind
 *   provider_local.c the asynchronous provider around local_generate()
 */
#ifndef AI_LOCAL_GEN_H
#define AI_LOCAL_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "provider.h"

/* A longer run without a sentence end is cut at a space before this many bytes, so one
 * unpunctuated page cannot become a single giant "sentence". */
#define LOCAL_MAX_SENTENCE_BYTES 1000
/* Longer tokens (URLs, base64, hashes) carry no meaning for ranking and are skipped. */
#define LOCAL_MAX_TOKEN_BYTES 64
/* The social post's limit, in Unicode code points (as Instagram counts). */
#define LOCAL_SOCIAL_MAX_CODEPOINTS 2200

/* ---------------------------------------------------------------- text (local_text.c) */

/* Appends in[0..len) to out as valid UTF-8: each byte that does not start a well-formed
 * sequence (bad lead, truncated, overlong, surrogate, > U+10FFFF) becomes U+FFFD, and control
 * characters other than tab and newline become spaces. Returns how many bytes were replaced. */
size_t local_utf8_repair(const char *in, size_t len, core_buf *out);
bool local_utf8_valid(const char *s, size_t len);
/* Decodes the well-formed sequence at s into *cp and returns its length, or 0 if malformed. */
size_t local_utf8_decode(const char *s, size_t len, uint32_t *cp);
size_t local_utf8_codepoints(const char *s, size_t len);
/* Bytes taken by the first max_codepoints code points of valid UTF-8 s. */
size_t local_utf8_prefix_bytes(const char *s, size_t len, size_t max_codepoints);

typedef struct local_span {
    size_t start;
    size_t len;
} local_span;

/* Splits valid UTF-8 text into trimmed sentences (see local_text.c for the rules). *spans is
 * malloc'd (free it); returns the count. Fragments without a letter or digit are dropped. */
size_t local_split_sentences(const char *text, size_t len, local_span **spans);

/* Called for each content token: stem is lowercased, stemmed (ASCII words) and not a
 * stopword; surface is the lowercased word before stemming. */
typedef void (*local_token_cb)(const char *stem, size_t stem_len, const char *surface,
                               size_t surface_len, void *data);
void local_tokenize(const char *text, size_t len, local_token_cb cb, void *data);
bool local_is_stopword(const char *word, size_t len);

/* Appends a sentence as it is, except that a whitespace run holding a newline or tab becomes
 * one space (so a sentence wrapped across lines stays one Markdown line). */
void local_append_sentence(core_buf *out, const char *s, size_t len);
/* Runs of non-blank characters (space, tab, newline separate them). */
size_t local_count_words(const char *s, size_t len);

/* ---------------------------------------------------------------- corpus (local_corpus.c) */

typedef struct local_sentence {
    uint32_t source;  /* index of the source it comes from (the first, for duplicates) */
    const char *text; /* inside the corpus's repaired copy of that source */
    size_t len;
    uint32_t term_first; /* its distinct term ids, ascending: corpus->term_pool[first..+n) */
    uint32_t nterms;
    uint32_t nwords;     /* content tokens, repeats included */
    uint32_t duplicates; /* how many more times it appeared verbatim in the sources */
    bool eligible;       /* may be chosen for a body (not a heading-like fragment) */
    double score;        /* TextRank score */
} local_sentence;

typedef struct local_source_info {
    char *text; /* repaired copy */
    size_t len;
    const char *title; /* from the request; NULL when empty */
    const char *url;   /* NULL when empty */
    uint32_t nsentences_kept;
} local_source_info;

typedef struct local_term {
    char *stem;
    char *surface;       /* the first lowercased form met, used for hashtags and headings */
    double weight;       /* keyword score, set by local_rank */
    double query_weight; /* 1 in the title or topic, 0.5 in the instructions only, else 0 */
} local_term;

typedef struct local_corpus {
    local_source_info *sources;
    size_t nsources;
    local_sentence *sentences; /* in source order: source 0's sentences first */
    size_t nsentences;
    uint32_t *term_pool;
    size_t term_pool_len, term_pool_cap;
    local_term *terms; /* ids in order of first appearance */
    size_t nterms, terms_cap;
    uint32_t *term_index; /* open-addressing table: term id + 1, 0 = empty */
    size_t term_index_cap;
    uint32_t *order;          /* sentence indices, best first (set by local_rank) */
    size_t dropped_sentences; /* over max_sentences */
    size_t repaired_bytes;    /* malformed UTF-8 replaced */
} local_corpus;

typedef struct local_limits {
    size_t max_input_bytes;
    size_t max_sources;
    size_t max_sentences;
} local_limits;

/* Builds the corpus; on failure fills err and returns the error (the corpus is then freed). */
provider_error local_corpus_build(local_corpus *c, const provider_request *req,
                                  const local_limits *limits, char *err, size_t errlen);
void local_corpus_free(local_corpus *c);
const uint32_t *local_sentence_terms(const local_corpus *c, const local_sentence *s);

/* ---------------------------------------------------------------- ranking (local_rank.c) */

#define LOCAL_DAMPING         0.85
#define LOCAL_MAX_ITERATIONS  100
#define LOCAL_CONVERGENCE_EPS 1e-7

/* Scores every sentence, fills c->order (ties: source order) and every term's weight. */
void local_rank(local_corpus *c);
/* Jaccard similarity of two sentences' term sets. */
double local_jaccard(const local_corpus *c, const local_sentence *a, const local_sentence *b);
/* The k best keywords (term ids) of one source, or of all when source == SIZE_MAX. Returns how
 * many it found; ties go to the term met first. */
size_t local_top_keywords(const local_corpus *c, size_t source, size_t k, uint32_t *out);

/* ---------------------------------------------------------------- body (local_compose.c) */

/* Redundancy threshold: a candidate this similar to a chosen sentence is skipped. */
#define LOCAL_MAX_JACCARD 0.5

void local_compose(const local_corpus *c, const provider_request *req, core_buf *out);

/* ---------------------------------------------------------------- all of it */

/* Synchronous generation: the body goes to out. On failure returns the error and fills err. */
provider_error local_generate(const provider_request *req, const local_limits *limits,
                              core_buf *out, char *err, size_t errlen);
local_limits local_limits_from(const provider_local_config *cfg);

#endif
