/*
 * The Markdown body per kind, from the ranked corpus. Every body sentence is a source sentence
 * as it is (a whitespace run holding a newline becomes one space); what is not a source
 * sentence is marked: heading lines ("# ", "## "), "Read more: <url>" lines, the newsletter's
 * closing rule and bold call to action, and the social post's hashtag line.
 *
 *   article     "# " title (or the top sentence, shortened), then up to ARTICLE_MAX_SENTENCES
 *               sentences (ARTICLE_MAX_WORDS words) in source order, 2-3 per paragraph
 *   newsletter  "# " title (or the top keywords), the top sentence as intro, then a "## "
 *               section per source (its title, or its keywords) with up to 3 sentences and
 *               its "Read more: <url>", then a call to action
 *   social      1-3 top sentences and 3-5 hashtags, at most 2,200 code points in all
 */
#include "local_gen.h"

#include <stdlib.h>
#include <string.h>

#define ARTICLE_MAX_SENTENCES    10
#define ARTICLE_MAX_WORDS        350
#define NEWSLETTER_MAX_SECTIONS  8
#define NEWSLETTER_MAX_SENTENCES 12
#define SECTION_MAX_SENTENCES    3
#define SECTION_MAX_WORDS        200
#define SOCIAL_MAX_SENTENCES     3
#define SOCIAL_MIN_HASHTAGS      3
#define SOCIAL_MAX_HASHTAGS      5
#define HEADLINE_MAX_CODEPOINTS  90
#define NEWSLETTER_CTA           "**Reply with your thoughts, or forward this issue to a colleague.**"

typedef struct selection {
    uint32_t *picked; /* sentence indices, in the order chosen */
    size_t n;
    bool *chosen; /* per sentence */
} selection;

static void selection_init(selection *sel, const local_corpus *c)
{
    sel->picked = calloc(c->nsentences, sizeof *sel->picked);
    sel->chosen = calloc(c->nsentences, sizeof *sel->chosen);
    if (!sel->picked || !sel->chosen) abort();
    sel->n = 0;
}

static void selection_free(selection *sel)
{
    free(sel->picked);
    free(sel->chosen);
}

/* Too close to a sentence already chosen (same words, give or take). */
static bool redundant(const local_corpus *c, const selection *sel, const local_sentence *s)
{
    for (size_t k = 0; k < sel->n; k++)
        if (local_jaccard(c, &c->sentences[sel->picked[k]], s) > LOCAL_MAX_JACCARD) return true;
    return false;
}

/* Chooses up to max_count more sentences in rank order (from one source, or any when source is
 * SIZE_MAX) within max_words; the first one is taken whatever its length. Returns how many. */
static size_t pick(const local_corpus *c, selection *sel, size_t source, size_t max_count,
                   size_t max_words)
{
    size_t taken = 0, words = 0;
    for (size_t r = 0; r < c->nsentences && taken < max_count; r++) {
        uint32_t i = c->order[r];
        const local_sentence *s = &c->sentences[i];
        if (!s->eligible || sel->chosen[i]) continue;
        if (source != SIZE_MAX && s->source != source) continue;
        if (redundant(c, sel, s)) continue;
        size_t w = local_count_words(s->text, s->len);
        if (taken > 0 && words + w > max_words) continue;
        sel->picked[sel->n++] = i;
        sel->chosen[i] = true;
        words += w;
        taken++;
    }
    return taken;
}

static int compare_ids(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The last `count` picks, back in source order. */
static uint32_t *in_source_order(const selection *sel, size_t count)
{
    uint32_t *ids = sel->picked + sel->n - count;
    if (count > 1) qsort(ids, count, sizeof *ids, compare_ids);
    return ids;
}

/* User text on one line: repaired, whitespace runs folded, leading '#' and spaces dropped. */
static void append_one_line(core_buf *out, const char *text)
{
    core_buf repaired = {0};
    local_utf8_repair(text, strlen(text), &repaired);
    size_t i = 0;
    while (i < repaired.len && (repaired.data[i] == '#' || repaired.data[i] == ' ' ||
                                repaired.data[i] == '\t' || repaired.data[i] == '\n'))
        i++;
    bool pending_space = false;
    for (; i < repaired.len; i++) {
        char ch = repaired.data[i];
        if (ch == ' ' || ch == '\t' || ch == '\n') {
            pending_space = true;
            continue;
        }
        if (pending_space) core_buf_append(out, " ", 1);
        pending_space = false;
        core_buf_append(out, &ch, 1);
    }
    core_buf_free(&repaired);
}

/* The top sentence as a headline: without its final period, cut at a word when too long. */
static void append_headline_from(core_buf *out, const local_sentence *s)
{
    core_buf line = {0};
    local_append_sentence(&line, s->text, s->len);
    size_t len = line.len;
    while (len > 0 && line.data[len - 1] == '.')
        len--;
    size_t limit = local_utf8_prefix_bytes(line.data, len, HEADLINE_MAX_CODEPOINTS);
    if (limit < len) {
        size_t cut = limit;
        while (cut > limit / 2 && line.data[cut] != ' ')
            cut--;
        if (line.data[cut] != ' ') cut = limit;
        core_buf_append(out, line.data, cut);
        core_buf_puts(out, "\xE2\x80\xA6");
    } else {
        core_buf_append(out, line.data, len);
    }
    core_buf_free(&line);
}

static const local_sentence *top_sentence(const local_corpus *c)
{
    for (size_t r = 0; r < c->nsentences; r++)
        if (c->sentences[c->order[r]].eligible) return &c->sentences[c->order[r]];
    return &c->sentences[c->order[0]];
}

/* "Energy, storage and batteries"; false when there are no keywords. */
static bool append_keyword_phrase(core_buf *out, const local_corpus *c, size_t source)
{
    uint32_t ids[3];
    size_t n = local_top_keywords(c, source, 3, ids);
    for (size_t k = 0; k < n; k++) {
        const char *word = c->terms[ids[k]].surface;
        if (k > 0) core_buf_puts(out, k + 1 == n ? " and " : ", ");
        if (k == 0 && word[0] >= 'a' && word[0] <= 'z') {
            char first = (char)(word[0] - 32);
            core_buf_append(out, &first, 1);
            core_buf_puts(out, word + 1);
        } else {
            core_buf_puts(out, word);
        }
    }
    return n > 0;
}

/* ---------------------------------------------------------------- article */

static void compose_article(const local_corpus *c, const provider_request *req, core_buf *out)
{
    core_buf_puts(out, "# ");
    if (req->title && *req->title)
        append_one_line(out, req->title);
    else
        append_headline_from(out, top_sentence(c));
    core_buf_puts(out, "\n\n");

    selection sel;
    selection_init(&sel, c);
    size_t n = pick(c, &sel, SIZE_MAX, ARTICLE_MAX_SENTENCES, ARTICLE_MAX_WORDS);
    const uint32_t *ids = in_source_order(&sel, n);
    size_t in_paragraph = 0;
    for (size_t k = 0; k < n; k++) {
        const local_sentence *s = &c->sentences[ids[k]];
        bool new_source = k > 0 && s->source != c->sentences[ids[k - 1]].source;
        if (in_paragraph >= 3 || (in_paragraph >= 2 && new_source)) {
            core_buf_puts(out, "\n\n");
            in_paragraph = 0;
        } else if (in_paragraph > 0) {
            core_buf_puts(out, " ");
        }
        local_append_sentence(out, s->text, s->len);
        in_paragraph++;
    }
    core_buf_puts(out, "\n");
    selection_free(&sel);
}

/* ---------------------------------------------------------------- newsletter */

static void compose_newsletter(const local_corpus *c, const provider_request *req, core_buf *out)
{
    core_buf_puts(out, "# ");
    if (req->title && *req->title) {
        append_one_line(out, req->title);
    } else {
        core_buf_puts(out, "In this issue: ");
        if (!append_keyword_phrase(out, c, SIZE_MAX)) core_buf_puts(out, "the latest");
    }
    core_buf_puts(out, "\n\n");

    selection sel;
    selection_init(&sel, c);
    if (pick(c, &sel, SIZE_MAX, 1, SIZE_MAX) == 1) {
        const local_sentence *intro = &c->sentences[sel.picked[0]];
        local_append_sentence(out, intro->text, intro->len);
        core_buf_puts(out, "\n");
    }
    size_t with_sentences = 0;
    for (size_t i = 0; i < c->nsources; i++)
        if (c->sources[i].nsentences_kept > 0) with_sentences++;
    if (with_sentences > NEWSLETTER_MAX_SECTIONS) with_sentences = NEWSLETTER_MAX_SECTIONS;
    size_t per_section = with_sentences ? NEWSLETTER_MAX_SENTENCES / with_sentences : 1;
    if (per_section > SECTION_MAX_SENTENCES) per_section = SECTION_MAX_SENTENCES;
    if (per_section < 1) per_section = 1;

    size_t sections = 0;
    for (size_t i = 0; i < c->nsources && sections < NEWSLETTER_MAX_SECTIONS; i++) {
        size_t n = pick(c, &sel, i, per_section, SECTION_MAX_WORDS);
        if (n == 0) continue;
        sections++;
        core_buf_puts(out, "\n## ");
        if (c->sources[i].title)
            append_one_line(out, c->sources[i].title);
        else if (!append_keyword_phrase(out, c, i))
            core_buf_printf(out, "Source %zu", i + 1);
        core_buf_puts(out, "\n\n");
        const uint32_t *ids = in_source_order(&sel, n);
        for (size_t k = 0; k < n; k++) {
            if (k > 0) core_buf_puts(out, " ");
            local_append_sentence(out, c->sentences[ids[k]].text, c->sentences[ids[k]].len);
        }
        core_buf_puts(out, "\n");
        if (c->sources[i].url) {
            core_buf_puts(out, "\nRead more: ");
            append_one_line(out, c->sources[i].url);
            core_buf_puts(out, "\n");
        }
    }
    core_buf_puts(out, "\n---\n\n" NEWSLETTER_CTA "\n");
    selection_free(&sel);
}

/* ---------------------------------------------------------------- social */

/* Letters and digits only: no symbols, emoji or private-use characters in a hashtag. */
static bool hashtag_safe(const char *word)
{
    size_t len = strlen(word);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = local_utf8_decode(word + i, len - i, &cp);
        if (n == 0) return false;
        bool ascii_alnum = (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z');
        bool letter = cp >= 0xC0 && !(cp >= 0x2100 && cp <= 0x2BFF) &&
                      !(cp >= 0x2E00 && cp <= 0x2E7F) && !(cp >= 0xE000 && cp <= 0xF8FF) &&
                      cp < 0x1F000;
        if (!ascii_alnum && !letter) return false;
        i += n;
    }
    return len > 0;
}

static void append_hashtags(const local_corpus *c, core_buf *tags)
{
    uint32_t ids[4 * SOCIAL_MAX_HASHTAGS];
    size_t n = local_top_keywords(c, SIZE_MAX, sizeof ids / sizeof ids[0], ids);
    size_t used = 0;
    double top = 0;
    for (size_t k = 0; k < n && used < SOCIAL_MAX_HASHTAGS; k++) {
        const local_term *t = &c->terms[ids[k]];
        if (!hashtag_safe(t->surface)) continue;
        /* beyond the minimum, only keywords that weigh at least half the best one */
        if (used >= SOCIAL_MIN_HASHTAGS && t->weight < top / 2) break;
        if (used == 0) top = t->weight;
        if (used > 0) core_buf_puts(tags, " ");
        core_buf_puts(tags, "#");
        core_buf_puts(tags, t->surface);
        used++;
    }
}

/* A sentence too long for the post: at most budget code points, ending at a word with "…". */
static void append_shortened(core_buf *out, const local_sentence *s, size_t budget)
{
    core_buf line = {0};
    local_append_sentence(&line, s->text, s->len);
    size_t limit = local_utf8_prefix_bytes(line.data, line.len, budget - 1);
    if (limit >= line.len) { /* it fits once its line breaks are folded */
        core_buf_append(out, line.data, line.len);
    } else {
        size_t end = limit;
        while (end > limit / 2 && line.data[end] != ' ')
            end--;
        if (line.data[end] != ' ') end = limit;
        core_buf_append(out, line.data, end);
        core_buf_puts(out, "\xE2\x80\xA6");
    }
    core_buf_free(&line);
}

static void compose_social(const local_corpus *c, core_buf *out)
{
    core_buf tags = {0};
    append_hashtags(c, &tags);
    size_t tag_cost = tags.len ? local_utf8_codepoints(tags.data, tags.len) + 2 : 0;
    /* the final newline counts too */
    size_t budget = LOCAL_SOCIAL_MAX_CODEPOINTS - 1 - tag_cost;

    selection sel;
    selection_init(&sel, c);
    size_t used = 0;
    bool cut = false;
    for (size_t r = 0; r < c->nsentences && sel.n < SOCIAL_MAX_SENTENCES; r++) {
        uint32_t i = c->order[r];
        const local_sentence *s = &c->sentences[i];
        if (!s->eligible || redundant(c, &sel, s)) continue;
        size_t cost = local_utf8_codepoints(s->text, s->len) + (sel.n ? 1 : 0);
        if (used + cost <= budget) {
            sel.picked[sel.n++] = i;
            used += cost;
        } else if (sel.n == 0) {
            sel.picked[sel.n++] = i; /* the best sentence alone is too long: cut below */
            cut = true;
            break;
        }
    }
    if (cut) {
        append_shortened(out, &c->sentences[sel.picked[0]], budget);
    } else {
        const uint32_t *ids = in_source_order(&sel, sel.n);
        for (size_t k = 0; k < sel.n; k++) {
            if (k > 0) core_buf_puts(out, " ");
            local_append_sentence(out, c->sentences[ids[k]].text, c->sentences[ids[k]].len);
        }
    }
    if (tags.len) {
        core_buf_puts(out, "\n\n");
        core_buf_append(out, tags.data, tags.len);
    }
    core_buf_puts(out, "\n");
    core_buf_free(&tags);
    selection_free(&sel);
}

void local_compose(const local_corpus *c, const provider_request *req, core_buf *out)
{
    switch (req->kind) {
    case PROVIDER_KIND_ARTICLE:
        compose_article(c, req, out);
        break;
    case PROVIDER_KIND_NEWSLETTER:
        compose_newsletter(c, req, out);
        break;
    case PROVIDER_KIND_SOCIAL:
        compose_social(c, out);
        break;
    }
}
