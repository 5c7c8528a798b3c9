/*
 * Text layer of the local provider: UTF-8 repair, sentence splitting and tokens.
 *
 * Sentence rules, in order:
 *   - a blank line ends a sentence (paragraph break);
 *   - a single newline ends one only before a list item, after a list item, or after a short
 *     heading-like line (no end punctuation, at most SHORT_LINE_BYTES, next line capitalised);
 *     otherwise it is a line wrap inside a sentence;
 *   - '.', '!', '?', '…' (and runs of them, "?!", "...") followed by closing quotes or
 *     brackets, then whitespace or the end, end a sentence unless the next word starts with a
 *     lowercase letter ('"Why?" she asked', "wait... then") or the period follows an
 *     abbreviation: a title (Dr., Mr.), a Latin form (e.g., i.e., vs.), an initial (J. Smith),
 *     a numbering word before a number (No. 5, Fig. 3, Jan. 5), or a list number ("1. ");
 *   - '。', '！', '？' end a sentence without needing a space (CJK);
 *   - a period between non-spaces (3.14, example.com, U.S.) never ends one.
 * Known limit: an initialism before a capitalised word ("the U.S. Army") is split there.
 */
#include "local_gen.h"

#include <stdlib.h>
#include <string.h>

/* A line this short without end punctuation, followed by a capitalised line, is a heading. */
#define SHORT_LINE_BYTES 50

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_ascii_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_ascii_lower(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* ---------------------------------------------------------------- UTF-8 */

/* Length (1-4) of the well-formed sequence at s, or 0 when it is malformed (Unicode 15,
 * table 3-7: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t avail, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    uint32_t value;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        value = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        value = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        value = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    value = (value << 6) | (s[1] & 0x3F);
    for (size_t k = 2; k < n; k++) {
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
        value = (value << 6) | (s[k] & 0x3F);
    }
    *cp = value;
    return n;
}

size_t local_utf8_repair(const char *in, size_t len, core_buf *out)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    const unsigned char *s = (const unsigned char *)in;
    size_t repairs = 0, run = 0, i = 0;
    core_buf_append(out, "", 0); /* data is non-NULL even for empty input */
    while (i < len) {
        unsigned char c = s[i];
        uint32_t cp;
        size_t n = utf8_sequence(s + i, len - i, &cp);
        bool control = n == 1 && ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7F);
        if (n != 0 && !control) {
            i += n;
            continue;
        }
        core_buf_append(out, in + run, i - run);
        if (n == 0) {
            core_buf_append(out, replacement, 3);
            repairs++;
        } else if (c == '\r') {
            /* CRLF and a lone CR both end a line */
            if (i + 1 >= len || s[i + 1] != '\n') core_buf_append(out, "\n", 1);
        } else {
            core_buf_append(out, " ", 1);
        }
        i++;
        run = i;
    }
    core_buf_append(out, in + run, len - run);
    return repairs;
}

size_t local_utf8_decode(const char *s, size_t len, uint32_t *cp)
{
    return len ? utf8_sequence((const unsigned char *)s, len, cp) : 0;
}

bool local_utf8_valid(const char *s, size_t len)
{
    uint32_t cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence((const unsigned char *)s + i, len - i, &cp);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

size_t local_utf8_codepoints(const char *s, size_t len)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) count++;
    return count;
}

size_t local_utf8_prefix_bytes(const char *s, size_t len, size_t max_codepoints)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (count == max_codepoints) return i;
            count++;
        }
    }
    return len;
}

/* Punctuation and symbols outside ASCII separate words like ASCII punctuation does. */
static bool is_separator_codepoint(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 ||
           (cp >= 0x2000 && cp <= 0x206F) || (cp >= 0x3000 && cp <= 0x303F) ||
           (cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) || cp == 0xFFFD ||
           (cp >= 0xFE00 && cp <= 0xFE0F);
}

/* Whether a word character starts at s[i]; *n is the bytes to step over either way. */
static bool word_char_at(const char *text, size_t len, size_t i, size_t *n)
{
    unsigned char c = (unsigned char)text[i];
    if (c < 0x80) {
        *n = 1;
        return is_ascii_alnum(c);
    }
    uint32_t cp;
    size_t k = utf8_sequence((const unsigned char *)text + i, len - i, &cp);
    if (k == 0) {
        *n = 1;
        return false;
    }
    *n = k;
    return !is_separator_codepoint(cp);
}

static bool has_word_char(const char *text, size_t len)
{
    size_t n;
    for (size_t i = 0; i < len; i += n)
        if (word_char_at(text, len, i, &n)) return true;
    return false;
}

/* ---------------------------------------------------------------- sentences */

typedef struct span_list {
    local_span *v;
    size_t n, cap;
} span_list;

static void span_push(span_list *l, size_t start, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 32;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) abort();
    }
    l->v[l->n++] = (local_span){start, len};
}

static bool starts_with(const char *text, size_t len, size_t at, const char *prefix)
{
    size_t n = strlen(prefix);
    return at + n <= len && memcmp(text + at, prefix, n) == 0;
}

/* Bytes of a list or quote marker at `at` ("- ", "* ", "+ ", "• ", "> ", "## ", "12. ",
 * "3) "), 0 when there is none. */
static size_t list_marker_len(const char *text, size_t len, size_t at)
{
    static const char *const markers[] = {"- ", "* ", "+ ", "\xE2\x80\xA2 ", "> "};
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++)
        if (starts_with(text, len, at, markers[k])) return strlen(markers[k]);
    size_t i = at;
    while (i < len && text[i] == '#')
        i++;
    if (i > at && i < len && text[i] == ' ') return i + 1 - at;
    i = at;
    while (i < len && i - at < 3 && text[i] >= '0' && text[i] <= '9')
        i++;
    if (i > at && i + 1 < len && (text[i] == '.' || text[i] == ')') && text[i + 1] == ' ')
        return i + 2 - at;
    return 0;
}

static void emit_sentence(span_list *out, const char *text, size_t start, size_t end)
{
    while (start < end && is_space((unsigned char)text[start]))
        start++;
    for (size_t marker; start < end && (marker = list_marker_len(text, end, start)) != 0;) {
        start += marker;
        while (start < end && is_space((unsigned char)text[start]))
            start++;
    }
    while (end > start && is_space((unsigned char)text[end - 1]))
        end--;
    /* An overlong run is cut at the last space of its first LOCAL_MAX_SENTENCE_BYTES (or at a
     * character boundary when there is none), so every piece is still verbatim source text. */
    while (end - start > LOCAL_MAX_SENTENCE_BYTES) {
        size_t cut = start + LOCAL_MAX_SENTENCE_BYTES;
        while (cut > start + LOCAL_MAX_SENTENCE_BYTES / 2 && !is_space((unsigned char)text[cut]))
            cut--;
        if (!is_space((unsigned char)text[cut])) {
            cut = start + LOCAL_MAX_SENTENCE_BYTES;
            while (((unsigned char)text[cut] & 0xC0) == 0x80)
                cut--;
        }
        size_t piece_end = cut;
        while (piece_end > start && is_space((unsigned char)text[piece_end - 1]))
            piece_end--;
        if (has_word_char(text + start, piece_end - start))
            span_push(out, start, piece_end - start);
        start = cut;
        while (start < end && is_space((unsigned char)text[start]))
            start++;
    }
    if (end > start && has_word_char(text + start, end - start)) span_push(out, start, end - start);
}

/* Bytes of a sentence-ending mark at text[i], 0 if none; *cjk when it needs no space after. */
static size_t terminator_len(const char *text, size_t len, size_t i, bool *cjk)
{
    *cjk = false;
    char c = text[i];
    if (c == '.' || c == '!' || c == '?') return 1;
    if (starts_with(text, len, i, "\xE2\x80\xA6")) return 3; /* … */
    if (starts_with(text, len, i, "\xE3\x80\x82") ||         /* 。 */
        starts_with(text, len, i, "\xEF\xBC\x81") ||         /* ！ */
        starts_with(text, len, i, "\xEF\xBC\x9F")) {         /* ？ */
        *cjk = true;
        return 3;
    }
    return 0;
}

/* Closing quotes and brackets belong to the sentence they end. */
static size_t closer_len(const char *text, size_t len, size_t i)
{
    static const char *const closers[] = {"\"",
                                          "'",
                                          ")",
                                          "]",
                                          "}",
                                          "\xE2\x80\x9D",
                                          "\xE2\x80\x99",
                                          "\xC2\xBB",
                                          "\xE3\x80\x8D",
                                          "\xE3\x80\x8F",
                                          "\xEF\xBC\x89"};
    for (size_t k = 0; k < sizeof closers / sizeof closers[0]; k++)
        if (starts_with(text, len, i, closers[k])) return strlen(closers[k]);
    return 0;
}

static size_t opener_len(const char *text, size_t len, size_t i)
{
    static const char *const openers[] = {
        "\"", "'", "(", "[", "\xE2\x80\x9C", "\xE2\x80\x98", "\xC2\xAB", "\xC2\xBF", "\xC2\xA1"};
    for (size_t k = 0; k < sizeof openers / sizeof openers[0]; k++)
        if (starts_with(text, len, i, openers[k])) return strlen(openers[k]);
    return 0;
}

/* A sentence does not start with a lowercase letter (after any opening quote or bracket). */
static bool may_start_sentence(const char *text, size_t len, size_t at)
{
    for (size_t n; at < len && (n = opener_len(text, len, at)) != 0;)
        at += n;
    return at < len && !is_ascii_lower((unsigned char)text[at]);
}

static bool word_in(const char *word, const char *const *list, size_t count)
{
    for (size_t k = 0; k < count; k++)
        if (strcmp(word, list[k]) == 0) return true;
    return false;
}

static bool next_word_is_stopword(const char *text, size_t len, size_t at)
{
    for (size_t n; at < len && (n = opener_len(text, len, at)) != 0;)
        at += n;
    char word[LOCAL_MAX_TOKEN_BYTES];
    size_t n = 0;
    while (at + n < len && n < sizeof word && is_ascii_alnum((unsigned char)text[at + n])) {
        word[n] = (char)ascii_lower((unsigned char)text[at + n]);
        n++;
    }
    return n > 0 && n < sizeof word && local_is_stopword(word, n);
}

/* Whether the single period at text[dot] (followed by space, then text[next]) ends the sentence
 * that began at `start`, judging by the word before it. */
static bool period_ends_sentence(const char *text, size_t len, size_t start, size_t dot,
                                 size_t next)
{
    /* Always inside a sentence: titles and Latin abbreviations. */
    static const char *const never[] = {"mr",  "mrs", "ms",  "dr",     "prof", "st",   "mt",  "ft",
                                        "gen", "sen", "rep", "gov",    "pres", "capt", "lt",  "col",
                                        "sgt", "rev", "hon", "messrs", "vs",   "v",    "e.g", "i.e",
                                        "cf",  "viz", "al",  "approx", "ca",   "esp",  "dept"};
    /* Only before a number ("No. 5"); "I said no. Then" still ends. */
    static const char *const before_number[] = {
        "no",  "nos", "fig", "figs", "vol", "pp",  "ch",  "sec", "art",  "eq",  "ref", "tab",
        "jan", "feb", "mar", "apr",  "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"};
    static const char *const ambiguous[] = {"inc", "ltd", "co", "corp", "etc", "jr", "sr", "bros"};
    size_t w = dot;
    while (w > start && (((unsigned char)text[w - 1] < 0x80 &&
                          (is_ascii_alnum((unsigned char)text[w - 1]) || text[w - 1] == '.'))))
        w--;
    size_t wlen = dot - w;
    if (wlen == 0) return true;
    bool digits = true;
    for (size_t k = w; k < dot; k++)
        if (text[k] < '0' || text[k] > '9') digits = false;
    if (digits) return !(w == start && wlen <= 3); /* "1. First step" is a list number */
    if (wlen == 1 && text[w] >= 'A' && text[w] <= 'Z') return false; /* an initial */
    char word[16];
    if (wlen >= sizeof word) return true;
    for (size_t k = 0; k < wlen; k++)
        word[k] = (char)ascii_lower((unsigned char)text[w + k]);
    word[wlen] = '\0';
    bool number_follows = next < len && text[next] >= '0' && text[next] <= '9';
    if (word_in(word, before_number, sizeof before_number / sizeof before_number[0]))
        return !number_follows;
    if (word_in(word, never, sizeof never / sizeof never[0])) return false;
    /* An initialism or company suffix ends a sentence only before a typical sentence opener:
     * "in the U.S. The vote" ends, "the U.S. Energy Lab" and "Acme Inc. Chief" do not. */
    if (memchr(word, '.', wlen) || word_in(word, ambiguous, sizeof ambiguous / sizeof ambiguous[0]))
        return next_word_is_stopword(text, len, next);
    return true;
}

/* A single newline at nl (next line starting at next) ends the sentence begun at start when
 * it closes a list item or a heading-like line, or opens a list item. */
static bool newline_ends_sentence(const char *text, size_t len, size_t line_start, size_t start,
                                  size_t nl, size_t next)
{
    size_t seg = line_start > start ? line_start : start;
    while (seg < nl && is_space((unsigned char)text[seg]))
        seg++;
    size_t end = nl;
    while (end > seg && is_space((unsigned char)text[end - 1]))
        end--;
    if (end == seg || next >= len) return false;
    if (list_marker_len(text, len, next) || list_marker_len(text, len, seg)) return true;
    char last = text[end - 1];
    bool continues = last == ',' || last == ';' || last == ':' || last == '-' || last == '(';
    return !continues && end - seg <= SHORT_LINE_BYTES &&
           !is_ascii_lower((unsigned char)text[next]) && may_start_sentence(text, len, next);
}

size_t local_split_sentences(const char *text, size_t len, local_span **spans)
{
    span_list out = {0};
    size_t start = 0, line_start = 0, i = 0;
    while (i < len) {
        if (text[i] == '\n') {
            size_t next = i + 1;
            while (next < len && (text[next] == ' ' || text[next] == '\t'))
                next++;
            if (next < len && text[next] == '\n') { /* blank line: paragraph break */
                emit_sentence(&out, text, start, i);
                start = line_start = i = next;
                continue;
            }
            if (newline_ends_sentence(text, len, line_start, start, i, next)) {
                emit_sentence(&out, text, start, i);
                start = next;
            }
            line_start = i = next;
            continue;
        }
        bool cjk;
        size_t mark = terminator_len(text, len, i, &cjk);
        if (mark == 0) {
            i++;
            continue;
        }
        bool single_period = text[i] == '.';
        size_t end = i + mark;
        for (bool more_cjk; end < len && (mark = terminator_len(text, len, end, &more_cjk)) != 0;) {
            single_period = false;
            cjk = cjk || more_cjk;
            end += mark;
        }
        for (size_t n; end < len && (n = closer_len(text, len, end)) != 0;)
            end += n;
        if (end >= len) break;
        if (!cjk && !is_space((unsigned char)text[end])) {
            i = end;
            continue;
        }
        size_t next = end;
        while (next < len && is_space((unsigned char)text[next]))
            next++;
        if (next >= len) break;
        bool ends = may_start_sentence(text, len, next) &&
                    (!single_period || period_ends_sentence(text, len, start, i, next));
        if (!ends) {
            i = end;
            continue;
        }
        emit_sentence(&out, text, start, end);
        /* a newline crossed here starts a new line */
        for (size_t k = end; k < next; k++)
            if (text[k] == '\n') line_start = k + 1;
        start = i = next;
    }
    emit_sentence(&out, text, start, len);
    *spans = out.v;
    return out.n;
}

void local_append_sentence(core_buf *out, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (i < len && !is_space((unsigned char)s[i]))
            i++;
        core_buf_append(out, s + run, i - run);
        size_t ws = i;
        bool only_spaces = true;
        while (i < len && is_space((unsigned char)s[i])) {
            if (s[i] != ' ') only_spaces = false;
            i++;
        }
        if (only_spaces)
            core_buf_append(out, s + ws, i - ws);
        else
            core_buf_append(out, " ", 1);
    }
}

/* ---------------------------------------------------------------- tokens */

static const char *stopwords[] = {
    "a",        "about",     "above",   "after",   "again",      "against",   "all",     "also",
    "although", "am",        "among",   "an",      "and",        "another",   "any",     "are",
    "as",       "at",        "be",      "because", "been",       "before",    "being",   "below",
    "between",  "both",      "but",     "by",      "can",        "cannot",    "could",   "did",
    "didn",     "do",        "does",    "doesn",   "doing",      "don",       "down",    "during",
    "each",     "either",    "etc",     "even",    "ever",       "every",     "few",     "for",
    "from",     "further",   "had",     "has",     "have",       "having",    "he",      "her",
    "here",     "hers",      "herself", "him",     "himself",    "his",       "how",     "however",
    "i",        "ie",        "if",      "in",      "into",       "is",        "isn",     "it",
    "its",      "itself",    "just",    "let",     "ll",         "may",       "me",      "might",
    "more",     "most",      "much",    "must",    "my",         "myself",    "neither", "no",
    "nor",      "not",       "now",     "of",      "off",        "on",        "once",    "only",
    "onto",     "or",        "other",   "our",     "ours",       "ourselves", "out",     "over",
    "own",      "per",       "re",      "said",    "same",       "say",       "says",    "shall",
    "she",      "should",    "since",   "so",      "some",       "such",      "than",    "that",
    "the",      "their",     "theirs",  "them",    "themselves", "then",      "there",   "these",
    "they",     "this",      "those",   "though",  "through",    "thus",      "to",      "too",
    "under",    "until",     "up",      "upon",    "us",         "ve",        "very",    "via",
    "was",      "wasn",      "we",      "were",    "what",       "when",      "where",   "whether",
    "which",    "while",     "who",     "whom",    "whose",      "why",       "will",    "with",
    "within",   "without",   "won",     "would",   "yet",        "you",       "your",    "yours",
    "yourself", "yourselves"};

static int compare_words(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool local_is_stopword(const char *word, size_t len)
{
    static bool sorted; /* the list is sorted once, so lookups are binary searches */
    const size_t count = sizeof stopwords / sizeof stopwords[0];
    if (!sorted) {
        qsort(stopwords, count, sizeof stopwords[0], compare_words);
        sorted = true;
    }
    char key[LOCAL_MAX_TOKEN_BYTES + 1];
    if (len > LOCAL_MAX_TOKEN_BYTES) return false;
    memcpy(key, word, len);
    key[len] = '\0';
    const char *probe = key;
    return bsearch(&probe, stopwords, count, sizeof stopwords[0], compare_words) != NULL;
}

static bool ends_with(const char *w, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(w + len - n, suffix, n) == 0;
}

/* Light suffix stripping so that "models", "modelled" and "modeling" meet; stems stay at least
 * four letters so that short words are left alone. Returns the stem's new length. */
static size_t light_stem(char *w, size_t len)
{
    if (len > 4 && ends_with(w, len, "ies")) {
        w[len - 3] = 'y';
        return len - 2;
    }
    if (ends_with(w, len, "sses")) return len - 2;
    if (len > 3 && ends_with(w, len, "s") && !ends_with(w, len, "ss") && !ends_with(w, len, "us") &&
        !ends_with(w, len, "is"))
        return len - 1;
    if (len >= 7 && ends_with(w, len, "ing")) return len - 3;
    if (len >= 6 && ends_with(w, len, "ed")) return len - 2;
    if (len >= 6 && ends_with(w, len, "ly")) return len - 2;
    return len;
}

static void emit_token(const char *word, size_t len, bool ascii, local_token_cb cb, void *data)
{
    if (len > LOCAL_MAX_TOKEN_BYTES || (ascii && len < 2)) return;
    char surface[LOCAL_MAX_TOKEN_BYTES + 1];
    for (size_t k = 0; k < len; k++)
        surface[k] = (char)ascii_lower((unsigned char)word[k]);
    surface[len] = '\0';
    if (local_is_stopword(surface, len)) return;
    char stem[LOCAL_MAX_TOKEN_BYTES + 1];
    memcpy(stem, surface, len + 1);
    size_t stem_len = ascii ? light_stem(stem, len) : len;
    stem[stem_len] = '\0';
    cb(stem, stem_len, surface, len, data);
}

void local_tokenize(const char *text, size_t len, local_token_cb cb, void *data)
{
    size_t i = 0, n;
    while (i < len) {
        if (!word_char_at(text, len, i, &n)) {
            i += n;
            continue;
        }
        size_t start = i;
        bool ascii = true;
        while (i < len && word_char_at(text, len, i, &n)) {
            if ((unsigned char)text[i] >= 0x80) ascii = false;
            i += n;
        }
        emit_token(text + start, i - start, ascii, cb, data);
    }
}

size_t local_count_words(const char *s, size_t len)
{
    size_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < len; i++) {
        bool space = s[i] == ' ' || s[i] == '\n' || s[i] == '\t';
        if (!space && !in_word) words++;
        in_word = !space;
    }
    return words;
}
