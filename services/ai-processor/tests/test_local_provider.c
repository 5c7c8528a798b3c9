/* Unit tests for the ai-processor's provider contract and its local extractive generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../local_gen.h"
#include "../provider.h"

/* ------------------------------------------------------------ helpers */

/* Generates synchronously; the body is returned (free it) or the test fails. */
static char *generate_ok(const provider_request *req)
{
    core_buf out = {0};
    char err[256] = "";
    local_limits limits = local_limits_from(NULL);
    provider_error error = local_generate(req, &limits, &out, err, sizeof err);
    if (error != PROVIDER_OK) fail_msg("generation failed: %s", err);
    assert_true(local_utf8_valid(out.data, out.len));
    return core_buf_steal(&out, NULL);
}

static void assert_split(const char *text, const char *const *expected, size_t nexpected)
{
    local_span *spans = NULL;
    size_t n = local_split_sentences(text, strlen(text), &spans);
    for (size_t i = 0; i < n && i < nexpected; i++) {
        if (spans[i].len != strlen(expected[i]) ||
            memcmp(text + spans[i].start, expected[i], spans[i].len) != 0)
            fail_msg("sentence %zu: got \"%.*s\", want \"%s\"", i, (int)spans[i].len,
                     text + spans[i].start, expected[i]);
    }
    if (n != nexpected) fail_msg("got %zu sentences, want %zu", n, nexpected);
    free(spans);
}

static size_t count_occurrences(const char *haystack, const char *needle)
{
    size_t count = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        count++;
    return count;
}

/* Lines that are not source text: headings, links, the call to action, rules, hashtags. */
static bool is_decoration(const char *line, size_t len)
{
    return len == 0 || line[0] == '#' || (len >= 11 && memcmp(line, "Read more: ", 11) == 0) ||
           (len >= 2 && memcmp(line, "**", 2) == 0) || (len == 3 && memcmp(line, "---", 3) == 0);
}

/* Every other line must be source sentences joined by single spaces (longest match first). */
static void assert_lines_are_sentences(const char *body, const char *const *sentences,
                                       size_t nsentences)
{
    for (const char *line = body; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (!is_decoration(line, len)) {
            size_t pos = 0;
            while (pos < len) {
                size_t best = 0;
                for (size_t k = 0; k < nsentences; k++) {
                    size_t n = strlen(sentences[k]);
                    if (n > best && pos + n <= len && memcmp(line + pos, sentences[k], n) == 0)
                        best = n;
                }
                if (best == 0) fail_msg("not a source sentence: \"%.*s\"", (int)len, line);
                pos += best;
                if (pos < len) {
                    assert_int_equal(line[pos], ' ');
                    pos++;
                }
            }
        }
        line += len + (eol ? 1 : 0);
    }
}

/* How many distinct energy_sentences the body holds. */
static size_t distinct_sentences_in(const char *body);

static char *join_sentences(const char *const *sentences, size_t first, size_t count)
{
    core_buf b = {0};
    for (size_t k = first; k < first + count; k++) {
        if (k > first) core_buf_puts(&b, " ");
        core_buf_puts(&b, sentences[k]);
    }
    return core_buf_steal(&b, NULL);
}

/* Three sources about one theme: the example of the README. */
static const char *const energy_sentences[] = {
    /* source 0 */
    "Solar power is getting cheaper every year.",
    "Dr. Lee of the U.S. Energy Lab said panel prices fell 12.5% in 2024.",
    "Cheaper panels mean more homes install solar power.",
    "Storage remains the hard part, e.g. batteries for the night.",
    /* source 1 */
    "Battery storage is the missing piece for solar power.",
    "Grid batteries now store solar energy for the evening peak.",
    "\"Prices will keep falling,\" said one analyst.",
    "Storage costs dropped by half since 2020.",
    /* source 2 */
    "Wind and solar power together supplied a record share of electricity.",
    "Solar power is getting cheaper every year.",
    "Kraftwerk S\xC3\xBC"
    "d in M\xC3\xBCnchen plans 200 MW of new panels\xE2\x80\xA6",
    "Critics worry about grid stability.",
};

typedef struct energy_example {
    char *texts[3];
    provider_source sources[3];
    provider_request req;
} energy_example;

static void energy_init(energy_example *ex, provider_kind kind, const char *title)
{
    for (size_t i = 0; i < 3; i++)
        ex->texts[i] = join_sentences(energy_sentences, i * 4, 4);
    ex->sources[0] = (provider_source){ex->texts[0], "https://example.org/solar", "Cheaper solar"};
    ex->sources[1] = (provider_source){ex->texts[1], "https://example.org/batteries", NULL};
    ex->sources[2] = (provider_source){ex->texts[2], NULL, NULL};
    ex->req = (provider_request){.kind = kind,
                                 .title = title,
                                 .topic = "solar power",
                                 .sources = ex->sources,
                                 .nsources = 3};
}

static size_t distinct_sentences_in(const char *body)
{
    const size_t n = sizeof energy_sentences / sizeof energy_sentences[0];
    size_t found = 0;
    for (size_t k = 0; k < n; k++) {
        bool repeat = false;
        for (size_t j = 0; j < k; j++)
            repeat = repeat || strcmp(energy_sentences[j], energy_sentences[k]) == 0;
        if (!repeat && strstr(body, energy_sentences[k])) found++;
    }
    return found;
}

static void energy_free(energy_example *ex)
{
    for (size_t i = 0; i < 3; i++)
        free(ex->texts[i]);
}

/* ------------------------------------------------------------ splitting */

static void test_split_abbreviations_and_numbers(void **state)
{
    (void)state;
    static const char *const want[] = {
        "Dr. Smith went to Washington.",
        "He met the U.S. president at 3 p.m. on Monday.",
        "Prices rose 3.5% last year, e.g. for food, see Fig. 2 and No. 5.",
        "The vote in the U.S.",
        "The U.S. Energy Lab agreed.",
        "Acme Inc. Chief Jo Bell agreed.",
        "John F. Kennedy spoke.",
    };
    assert_split("Dr. Smith went to Washington. He met the U.S. president at 3 p.m. on Monday. "
                 "Prices rose 3.5% last year, e.g. for food, see Fig. 2 and No. 5. The vote in "
                 "the U.S. The U.S. Energy Lab agreed. Acme Inc. Chief Jo Bell agreed. John F. "
                 "Kennedy spoke.",
                 want, sizeof want / sizeof want[0]);
}

static void test_split_quotes_brackets_ellipsis(void **state)
{
    (void)state;
    static const char *const want[] = {
        "\"Is it over?\" she asked.",
        "He said \"yes.\"",
        "Then he left...",
        "Later (much later.) they returned!",
        "Wait... what?!",
        "(No way.)",
        "\xE2\x80\x9C"
        "Fine.\xE2\x80\x9D",
        "Done\xE2\x80\xA6",
        "Really.",
    };
    assert_split("\"Is it over?\" she asked. He said \"yes.\" Then he left... Later (much later.) "
                 "they returned! Wait... what?! (No way.) \xE2\x80\x9C"
                 "Fine.\xE2\x80\x9D Done\xE2\x80\xA6 Really.",
                 want, sizeof want / sizeof want[0]);
}

static void test_split_newlines_paragraphs_lists(void **state)
{
    (void)state;
    static const char *const want[] = {
        "Market Update",
        "Stocks rose sharply on Tuesday as investors cheered the\nnews from the central bank.",
        "A new paragraph starts here",
        "First item in a list",
        "Second item",
        "Numbered step one.",
        "Numbered step two.",
    };
    assert_split("Market Update\nStocks rose sharply on Tuesday as investors cheered the\nnews "
                 "from the central bank.\n\nA new paragraph starts here\n\n- First item in a "
                 "list\n- Second item\n1. Numbered step one.\n2. Numbered step two.\n",
                 want, sizeof want / sizeof want[0]);
}

static void test_split_utf8_and_cjk(void **state)
{
    (void)state;
    static const char *const want[] = {
        "\xC3\x87"
        "a co\xC3\xBBte 5 \xE2\x82\xAC.",
        "Tr\xC3\xA8s bien!",
        "\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xAF\xE6\x99\xB4\xE3\x82\x8C\xE3\x80\x82",
        "\xE5\xA4\xA7\xE9\x98\xAA\xE3\x81\xAF\xE9\x9B\xA8\xE3\x80\x82",
        "\xC2\xABOui\xC2\xBB, dit-il.",
    };
    assert_split("\xC3\x87"
                 "a co\xC3\xBBte 5 \xE2\x82\xAC. Tr\xC3\xA8s bien! "
                 "\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xAF\xE6\x99\xB4\xE3\x82\x8C\xE3\x80\x82"
                 "\xE5\xA4\xA7\xE9\x98\xAA\xE3\x81\xAF\xE9\x9B\xA8\xE3\x80\x82"
                 "\xC2\xABOui\xC2\xBB, dit-il.",
                 want, sizeof want / sizeof want[0]);
}

static void test_split_bounds_long_runs(void **state)
{
    (void)state;
    /* 3,000 bytes of two-byte letters and spaces with no sentence end at all */
    core_buf text = {0};
    while (text.len < 3000)
        core_buf_puts(&text, "\xC3\xA9t\xC3\xA9 ");
    local_span *spans = NULL;
    size_t n = local_split_sentences(text.data, text.len, &spans);
    assert_true(n >= 3);
    for (size_t i = 0; i < n; i++) {
        assert_true(spans[i].len <= LOCAL_MAX_SENTENCE_BYTES);
        assert_true(local_utf8_valid(text.data + spans[i].start, spans[i].len));
    }
    free(spans);
    core_buf_free(&text);
}

static void test_utf8_repair(void **state)
{
    (void)state;
    /* a lone continuation, an overlong '/', a surrogate, a truncated euro sign, a control */
    const char bad[] = "a\x80 b\xC0\xAF c\xED\xA0\x80 d\xE2\x82 e\x01 f\r\ng";
    core_buf out = {0};
    size_t repairs = local_utf8_repair(bad, sizeof bad - 1, &out);
    assert_int_equal(repairs, 1 + 2 + 3 + 2);
    assert_true(local_utf8_valid(out.data, out.len));
    assert_non_null(strstr(out.data, "a\xEF\xBF\xBD b"));
    assert_non_null(strstr(out.data, "e  f\ng"));
    core_buf_free(&out);
    assert_false(local_utf8_valid("\xF4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_true(local_utf8_valid("\xF0\x9F\x98\x80", 4));
    assert_int_equal(local_utf8_codepoints("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 10), 4);
    assert_int_equal(local_utf8_prefix_bytes("a\xC3\xA9\xE2\x82\xAC", 6, 2), 3);
}

typedef struct token_log {
    core_buf stems;
} token_log;

static void log_token(const char *stem, size_t stem_len, const char *surface, size_t surface_len,
                      void *data)
{
    (void)surface;
    (void)surface_len;
    token_log *log = data;
    core_buf_append(&log->stems, stem, stem_len);
    core_buf_puts(&log->stems, "|");
}

static void test_tokens_lowercase_stopwords_stems(void **state)
{
    (void)state;
    token_log log = {0};
    const char text[] = "The Models were RUNNING over bridges; the city's caf\xC3\xA9s don't care.";
    local_tokenize(text, sizeof text - 1, log_token, &log);
    assert_string_equal(log.stems.data, "model|runn|bridge|city|caf\xC3\xA9s|care|");
    core_buf_free(&log.stems);
    assert_true(local_is_stopword("the", 3));
    assert_false(local_is_stopword("solar", 5));
}

/* ------------------------------------------------------------ ranking */

static void test_rank_prefers_central_sentence(void **state)
{
    (void)state;
    /* The third sentence shares words with every other; the museum shares none. */
    provider_source src = {.text = "Solar panels cover the roof. Batteries store energy overnight. "
                                   "Solar panels and batteries power homes cheaply. Homes use "
                                   "less grid power. The museum opened a new wing."};
    provider_request req = {.kind = PROVIDER_KIND_ARTICLE, .sources = &src, .nsources = 1};
    local_corpus c;
    char err[128];
    local_limits limits = local_limits_from(NULL);
    assert_int_equal(local_corpus_build(&c, &req, &limits, err, sizeof err), PROVIDER_OK);
    local_rank(&c);
    assert_int_equal(c.nsentences, 5);
    const local_sentence *top = &c.sentences[c.order[0]];
    assert_memory_equal(top->text, "Solar panels and batteries", 26);
    assert_int_equal(c.order[c.nsentences - 1], 4); /* the museum comes last */
    local_corpus_free(&c);
}

static void test_topic_biases_ranking(void **state)
{
    (void)state;
    /* Two symmetric sentences tie and go in source order, unless the topic names one. */
    provider_source src = {.text = "Cats sleep all day long. Dogs bark at the mailman."};
    provider_request req = {.kind = PROVIDER_KIND_SOCIAL, .sources = &src, .nsources = 1};
    local_corpus c;
    char err[128];
    local_limits limits = local_limits_from(NULL);
    assert_int_equal(local_corpus_build(&c, &req, &limits, err, sizeof err), PROVIDER_OK);
    local_rank(&c);
    assert_int_equal(c.order[0], 0);
    local_corpus_free(&c);
    req.topic = "dogs";
    assert_int_equal(local_corpus_build(&c, &req, &limits, err, sizeof err), PROVIDER_OK);
    local_rank(&c);
    assert_int_equal(c.order[0], 1);
    local_corpus_free(&c);
}

/* ------------------------------------------------------------ generation */

static void test_deterministic_output(void **state)
{
    (void)state;
    for (int kind = PROVIDER_KIND_ARTICLE; kind <= PROVIDER_KIND_SOCIAL; kind++) {
        energy_example ex;
        energy_init(&ex, (provider_kind)kind, NULL);
        char *first = generate_ok(&ex.req);
        char *second = generate_ok(&ex.req);
        assert_string_equal(first, second);
        /* a copy of the request (new addresses, same bytes) gives the same bytes too */
        provider_request *copy = provider_request_copy(&ex.req);
        char *third = generate_ok(copy);
        assert_string_equal(first, third);
        free(copy);
        free(first);
        free(second);
        free(third);
        energy_free(&ex);
    }
}

static void test_body_sentences_come_from_sources(void **state)
{
    (void)state;
    for (int kind = PROVIDER_KIND_ARTICLE; kind <= PROVIDER_KIND_SOCIAL; kind++) {
        for (int titled = 0; titled < 2; titled++) {
            energy_example ex;
            energy_init(&ex, (provider_kind)kind, titled ? "The cost of sunshine" : NULL);
            char *body = generate_ok(&ex.req);
            assert_lines_are_sentences(body, energy_sentences,
                                       sizeof energy_sentences / sizeof energy_sentences[0]);
            free(body);
            energy_free(&ex);
        }
    }
}

static void test_duplicates_appear_once(void **state)
{
    (void)state;
    energy_example ex;
    energy_init(&ex, PROVIDER_KIND_ARTICLE, "Solar");
    char *body = generate_ok(&ex.req);
    /* sources 0 and 2 both hold it; it is central enough to be chosen */
    assert_int_equal(count_occurrences(body, "Solar power is getting cheaper every year."), 1);
    free(body);
    /* merged before ranking (not merely filtered as redundant): 12 sentences, 11 kept */
    local_corpus c;
    char err[128];
    local_limits limits = local_limits_from(NULL);
    assert_int_equal(local_corpus_build(&c, &ex.req, &limits, err, sizeof err), PROVIDER_OK);
    assert_int_equal(c.nsentences, 11);
    assert_int_equal(c.sentences[0].duplicates, 1);
    assert_int_equal(c.sources[2].nsentences_kept, 3);
    local_corpus_free(&c);
    energy_free(&ex);
}

static void test_article_shape(void **state)
{
    (void)state;
    energy_example ex;
    energy_init(&ex, PROVIDER_KIND_ARTICLE, "The cost of\n sunshine");
    char *body = generate_ok(&ex.req);
    assert_memory_equal(body, "# The cost of sunshine\n\n", 24);
    assert_non_null(strstr(body + 24, "\n\n")); /* more than one paragraph */
    assert_null(strstr(body + 2, "\n#"));       /* one heading only */
    size_t sentences = distinct_sentences_in(body);
    assert_true(sentences >= 3 && sentences <= 10);
    free(body);

    /* without a title, the headline is the top sentence without its period */
    ex.req.title = NULL;
    body = generate_ok(&ex.req);
    assert_memory_equal(body, "# ", 2);
    const char *eol = strchr(body, '\n');
    assert_non_null(eol);
    assert_true(eol[-1] != '.');
    assert_true(eol - body > 10);
    free(body);
    energy_free(&ex);
}

static void test_newsletter_shape(void **state)
{
    (void)state;
    energy_example ex;
    energy_init(&ex, PROVIDER_KIND_NEWSLETTER, "Energy weekly");
    char *body = generate_ok(&ex.req);
    assert_memory_equal(body, "# Energy weekly\n\n", 17);
    assert_non_null(strstr(body, "\n## Cheaper solar\n\n")); /* a source's title */
    assert_int_equal(count_occurrences(body, "\n## "), 3);   /* one section per source */
    assert_non_null(strstr(body, "\nRead more: https://example.org/solar\n"));
    assert_non_null(strstr(body, "\nRead more: https://example.org/batteries\n"));
    assert_int_equal(count_occurrences(body, "Read more: "), 2);
    const char *cta = strstr(body, "\n---\n\n**");
    assert_non_null(cta);
    assert_string_equal(cta + strlen(cta) - 3, "**\n"); /* the call to action ends it */
    /* the intro (the first paragraph after the title) is a source sentence */
    const char *intro = body + 17;
    size_t intro_len = (size_t)(strchr(intro, '\n') - intro);
    bool found = false;
    for (size_t k = 0; k < sizeof energy_sentences / sizeof energy_sentences[0]; k++)
        found = found || (strlen(energy_sentences[k]) == intro_len &&
                          memcmp(intro, energy_sentences[k], intro_len) == 0);
    assert_true(found);
    free(body);
    energy_free(&ex);
}

/* The hashtags of a social post, checked: 3-5, #letters-or-digits, no repeats. */
static void assert_hashtags(const char *body)
{
    const char *line = strrchr(body, '\n');
    assert_true(line && line[1] == '\0');
    while (line > body && line[-1] != '\n')
        line--;
    char tags[512];
    size_t len = strlen(line) - 1;
    assert_true(len < sizeof tags);
    memcpy(tags, line, len);
    tags[len] = '\0';
    size_t count = 0;
    char seen[5][128];
    for (char *tag = tags; tag && *tag;) {
        char *space = strchr(tag, ' ');
        if (space) *space = '\0';
        assert_int_equal(tag[0], '#');
        assert_true(strlen(tag) > 1 && strlen(tag) < 128);
        for (const char *p = tag + 1; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                        (unsigned char)*p >= 0x80);
        assert_true(count < 5);
        for (size_t k = 0; k < count; k++)
            assert_string_not_equal(seen[k], tag);
        memcpy(seen[count++], tag, strlen(tag) + 1);
        tag = space ? space + 1 : NULL;
    }
    assert_true(count >= 3 && count <= 5);
}

static void test_social_shape(void **state)
{
    (void)state;
    energy_example ex;
    energy_init(&ex, PROVIDER_KIND_SOCIAL, NULL);
    char *body = generate_ok(&ex.req);
    assert_true(local_utf8_codepoints(body, strlen(body)) <= LOCAL_SOCIAL_MAX_CODEPOINTS);
    assert_hashtags(body);
    size_t sentences = distinct_sentences_in(body);
    assert_true(sentences >= 1 && sentences <= 3);
    free(body);
    energy_free(&ex);

    /* non-ASCII words stay intact, in the text and in the hashtags */
    provider_source german = {.text = "Die Stra\xC3\x9F"
                                      "enbahn in M\xC3\xBC"
                                      "nchen f\xC3\xA4hrt wieder. Die "
                                      "Stra\xC3\x9F"
                                      "enbahn f\xC3\xA4hrt jetzt \xC3\xB6"
                                      "fter. Fahrg\xC3\xA4ste "
                                      "in M\xC3\xBC"
                                      "nchen freuen sich \xC3\xBC"
                                      "ber die Stra\xC3\x9F"
                                      "enbahn."};
    provider_request req = {.kind = PROVIDER_KIND_SOCIAL, .sources = &german, .nsources = 1};
    body = generate_ok(&req);
    assert_hashtags(body);
    assert_non_null(strstr(body, "Die Stra\xC3\x9F"
                                 "enbahn in M\xC3\xBC"
                                 "nchen f\xC3\xA4hrt"));
    assert_non_null(strstr(body, "#stra\xC3\x9F"
                                 "enbahn"));
    assert_non_null(strstr(body, "#m\xC3\xBC"
                                 "nchen"));
    free(body);
}

static void test_social_limit_with_long_multibyte_sentences(void **state)
{
    (void)state;
    /* sentences of ~900 code points in two-byte letters: three would not fit in 2,200 */
    core_buf text = {0};
    for (int s = 0; s < 4; s++) {
        for (int w = 0; w < 150; w++)
            core_buf_printf(&text, "%s\xC3\xA9t\xC3\xA9%d ", w % 7 == 0 ? "soleil" : "", s);
        core_buf_puts(&text, "fin. ");
    }
    provider_source src = {.text = text.data};
    provider_request req = {.kind = PROVIDER_KIND_SOCIAL, .sources = &src, .nsources = 1};
    char *body = generate_ok(&req);
    size_t cps = local_utf8_codepoints(body, strlen(body));
    assert_true(cps <= LOCAL_SOCIAL_MAX_CODEPOINTS);
    assert_true(cps > 500);
    free(body);
    core_buf_free(&text);
}

static void test_empty_sources_error(void **state)
{
    (void)state;
    local_limits limits = local_limits_from(NULL);
    char err[256];
    core_buf out = {0};
    provider_request req = {.kind = PROVIDER_KIND_ARTICLE};
    assert_int_equal(local_generate(&req, &limits, &out, err, sizeof err), PROVIDER_ERR_INVALID);
    assert_string_equal(err, "the request has no sources");
    provider_source blank[2] = {{.text = "   ... !!! \n\n -- "}, {.text = ""}};
    req.sources = blank;
    req.nsources = 2;
    assert_int_equal(local_generate(&req, &limits, &out, err, sizeof err), PROVIDER_ERR_INVALID);
    assert_non_null(strstr(err, "no sentences"));
    req.kind = (provider_kind)9;
    assert_int_equal(local_generate(&req, &limits, &out, err, sizeof err), PROVIDER_ERR_INVALID);
    assert_non_null(strstr(err, "kind"));
    assert_int_equal(out.len, 0);
    core_buf_free(&out);
}

static void test_one_sentence_source(void **state)
{
    (void)state;
    provider_source src = {.text = "  Hello world.  "};
    provider_request req = {.kind = PROVIDER_KIND_ARTICLE, .sources = &src, .nsources = 1};
    char *body = generate_ok(&req);
    assert_string_equal(body, "# Hello world\n\nHello world.\n");
    free(body);
    req.kind = PROVIDER_KIND_SOCIAL;
    body = generate_ok(&req);
    assert_string_equal(body, "Hello world.\n\n#hello #world\n"); /* only two keywords exist */
    free(body);
    req.kind = PROVIDER_KIND_NEWSLETTER;
    body = generate_ok(&req);
    assert_memory_equal(body, "# In this issue: Hello and world\n\nHello world.\n", 47);
    free(body);
}

static void test_malformed_utf8_is_repaired(void **state)
{
    (void)state;
    provider_source src = {.text = "The caf\xC3 opens early today. Bad \xFF\xFE bytes sit here. "
                                   "The bakery sells bread \xE2\x82"};
    provider_request req = {.kind = PROVIDER_KIND_ARTICLE, .sources = &src, .nsources = 1};
    char *body = generate_ok(&req); /* checks the body is valid UTF-8 */
    assert_non_null(strstr(body, "\xEF\xBF\xBD"));
    free(body);
    req.title = "Bad \xC0 title";
    body = generate_ok(&req);
    assert_memory_equal(body, "# Bad \xEF\xBF\xBD title\n", 15);
    free(body);
}

/* Sentences from a fixed pseudo-random generator, so the test input is the same every run. */
static void fill_random_text(core_buf *out, size_t bytes, uint32_t seed)
{
    static const char *const syllables[] = {"ka", "lo", "mi",  "ne",  "ru",  "sa",  "ti", "vo",
                                            "ze", "pa", "qui", "dor", "len", "bra", "sto"};
    uint32_t x = seed;
    while (out->len < bytes) {
        int words = 6 + (int)((x >> 8) % 12);
        for (int w = 0; w < words && out->len < bytes; w++) {
            x = x * 1664525u + 1013904223u;
            int parts = 1 + (int)((x >> 20) % 3);
            for (int p = 0; p < parts; p++) {
                x = x * 1664525u + 1013904223u;
                size_t at = out->len;
                core_buf_puts(out, syllables[(x >> 16) % 15]);
                if (w == 0 && p == 0) out->data[at] = (char)(out->data[at] - 32); /* Capital */
            }
            core_buf_puts(out, w + 1 == words ? ". " : " ");
        }
    }
    out->len = bytes;
    out->data[bytes] = '\0';
}

static void test_one_mebibyte_input_completes(void **state)
{
    (void)state;
    core_buf texts[4] = {{0}};
    provider_source src[4];
    for (int i = 0; i < 4; i++) {
        fill_random_text(&texts[i], PROVIDER_LOCAL_MAX_INPUT_BYTES / 4, 7u + (uint32_t)i);
        src[i] = (provider_source){.text = texts[i].data};
    }
    provider_request req = {.kind = PROVIDER_KIND_NEWSLETTER, .sources = src, .nsources = 4};
    local_corpus c;
    char err[256];
    local_limits limits = local_limits_from(NULL);
    assert_int_equal(local_corpus_build(&c, &req, &limits, err, sizeof err), PROVIDER_OK);
    assert_int_equal(c.nsentences + c.dropped_sentences > PROVIDER_LOCAL_MAX_SENTENCES, true);
    assert_true(c.nsentences <= PROVIDER_LOCAL_MAX_SENTENCES);
    for (size_t i = 0; i < 4; i++) /* a fair share each */
        assert_int_equal(c.sources[i].nsentences_kept > PROVIDER_LOCAL_MAX_SENTENCES / 5, true);
    local_corpus_free(&c);
    char *body = generate_ok(&req);
    assert_true(strlen(body) > 100 && strlen(body) < 20000);
    free(body);

    /* one byte more is refused, clearly */
    core_buf_puts(&texts[3], "x");
    src[3].text = texts[3].data;
    core_buf out = {0};
    assert_int_equal(local_generate(&req, &limits, &out, err, sizeof err), PROVIDER_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "1048577 bytes"));
    core_buf_free(&out);
    for (int i = 0; i < 4; i++)
        core_buf_free(&texts[i]);
}

/* ------------------------------------------------------------ the asynchronous contract */

typedef struct job_record {
    char stages[64];
    int last_percent;
    int done_calls;
    provider_error error;
    bool retriable;
    char message[256];
    char *body;
    provider_stats stats;
    char provider_name[16];
    bool cancel_on_progress;
    provider *provider;
} job_record;

static void record_progress(provider_job *job, const char *stage, int percent, void *data)
{
    job_record *r = data;
    size_t used = strlen(r->stages);
    snprintf(r->stages + used, sizeof r->stages - used, "%s%s", used ? "," : "", stage);
    assert_true(percent > r->last_percent && percent < 100);
    r->last_percent = percent;
    if (r->cancel_on_progress) provider_cancel(r->provider, job);
}

static void record_done(provider_job *job, const provider_result *result, void *data)
{
    job_record *r = data;
    r->done_calls++;
    r->error = result->error;
    r->retriable = result->retriable;
    snprintf(r->message, sizeof r->message, "%s", result->message ? result->message : "");
    r->body = result->body ? strdup(result->body) : NULL;
    r->stats = result->stats;
    snprintf(r->provider_name, sizeof r->provider_name, "%s", result->stats.provider);
    r->stats.provider = NULL;
    provider_cancel(r->provider, job); /* documented as a no-op inside on_done */
}

static void test_async_callbacks_run_from_the_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    provider *p = provider_local_new(&loop, NULL);
    assert_string_equal(provider_name(p), "local");
    energy_example ex;
    energy_init(&ex, PROVIDER_KIND_ARTICLE, NULL);
    job_record r = {.provider = p};
    provider_callbacks cb = {record_progress, record_done, &r};
    /* the request is copied: scribbling over ours after the call changes nothing */
    provider_request req = ex.req;
    provider_job *job = provider_generate(p, &req, &cb);
    assert_non_null(job);
    memset(&req, 0, sizeof req);
    assert_string_equal(r.stages, "");
    assert_int_equal(r.done_calls, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_string_equal(r.stages, "ranking,composing");
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.error, PROVIDER_OK);
    char *sync_body = generate_ok(&ex.req);
    assert_string_equal(r.body, sync_body); /* asynchronous and direct runs agree */
    assert_string_equal(r.provider_name, "local");
    assert_int_equal(r.stats.input_bytes, provider_request_bytes(&ex.req));
    assert_int_equal(r.stats.output_bytes, strlen(sync_body));
    assert_int_equal(r.stats.input_tokens, (r.stats.input_bytes + 3) / 4);
    assert_int_equal(r.stats.output_tokens, (r.stats.output_bytes + 3) / 4);
    assert_true(r.stats.tokens_estimated);
    free(sync_body);
    free(r.body);
    energy_free(&ex);
    provider_destroy(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_async_error_is_reported_not_retriable(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    provider *p = provider_local_new(&loop, NULL);
    job_record r = {.provider = p};
    provider_callbacks cb = {record_progress, record_done, &r};
    provider_source blank = {.text = "?!"};
    provider_request req = {.kind = PROVIDER_KIND_SOCIAL, .sources = &blank, .nsources = 1};
    assert_non_null(provider_generate(p, &req, &cb));
    assert_int_equal(r.done_calls, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.done_calls, 1);
    assert_int_equal(r.error, PROVIDER_ERR_INVALID);
    assert_false(r.retriable);
    assert_non_null(strstr(r.message, "no sentences"));
    assert_null(r.body);
    assert_int_equal(r.stats.output_bytes, 0);
    assert_null(provider_generate(p, &req, NULL)); /* no callbacks: refused at once */
    provider_destroy(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_async_cancel_and_destroy(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    provider *p = provider_local_new(&loop, NULL);
    energy_example ex;
    energy_init(&ex, PROVIDER_KIND_NEWSLETTER, NULL);

    job_record cancelled = {.provider = p};
    provider_callbacks cb = {record_progress, record_done, &cancelled};
    provider_cancel(p, provider_generate(p, &ex.req, &cb));

    job_record from_progress = {.provider = p, .cancel_on_progress = true};
    provider_callbacks cb2 = {record_progress, record_done, &from_progress};
    assert_non_null(provider_generate(p, &ex.req, &cb2));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_string_equal(cancelled.stages, "");
    assert_int_equal(cancelled.done_calls, 0);
    assert_string_equal(from_progress.stages, "ranking");
    assert_int_equal(from_progress.done_calls, 0);

    /* destroy with jobs in flight: no callbacks, nothing leaks */
    job_record orphan = {.provider = p};
    provider_callbacks cb3 = {record_progress, record_done, &orphan};
    assert_non_null(provider_generate(p, &ex.req, &cb3));
    assert_non_null(provider_generate(p, &ex.req, &cb3));
    provider_destroy(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(orphan.done_calls, 0);
    assert_string_equal(orphan.stages, "");
    energy_free(&ex);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_kind_names(void **state)
{
    (void)state;
    provider_kind kind;
    assert_true(provider_kind_parse("newsletter", &kind));
    assert_int_equal(kind, PROVIDER_KIND_NEWSLETTER);
    assert_false(provider_kind_parse("poem", &kind));
    assert_string_equal(provider_kind_name(PROVIDER_KIND_SOCIAL), "social");
    assert_string_equal(provider_error_name(PROVIDER_ERR_TOO_LARGE), "too_large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_abbreviations_and_numbers),
        cmocka_unit_test(test_split_quotes_brackets_ellipsis),
        cmocka_unit_test(test_split_newlines_paragraphs_lists),
        cmocka_unit_test(test_split_utf8_and_cjk),
        cmocka_unit_test(test_split_bounds_long_runs),
        cmocka_unit_test(test_utf8_repair),
        cmocka_unit_test(test_tokens_lowercase_stopwords_stems),
        cmocka_unit_test(test_rank_prefers_central_sentence),
        cmocka_unit_test(test_topic_biases_ranking),
        cmocka_unit_test(test_deterministic_output),
        cmocka_unit_test(test_body_sentences_come_from_sources),
        cmocka_unit_test(test_duplicates_appear_once),
        cmocka_unit_test(test_article_shape),
        cmocka_unit_test(test_newsletter_shape),
        cmocka_unit_test(test_social_shape),
        cmocka_unit_test(test_social_limit_with_long_multibyte_sentences),
        cmocka_unit_test(test_empty_sources_error),
        cmocka_unit_test(test_one_sentence_source),
        cmocka_unit_test(test_malformed_utf8_is_repaired),
        cmocka_unit_test(test_one_mebibyte_input_completes),
        cmocka_unit_test(test_async_callbacks_run_from_the_loop),
        cmocka_unit_test(test_async_error_is_reported_not_retriable),
        cmocka_unit_test(test_async_cancel_and_destroy),
        cmocka_unit_test(test_kind_names),
    };
    return cmocka_run_group_tests_name("ai-processor local provider", tests, NULL, NULL);
}
