/*
 * test_chat_json.c - unit tests for the chat plugin's JSON subset
 * (plugins/chat_json.c): the strict parser of flat string objects and
 * the escaping writer.
 *
 * Build: gcc -Wall -Wextra -Iplugins tests/unit/test_chat_json.c \
 *            plugins/chat_json.c -lcmocka -o /tmp/t && /tmp/t
 *
 * Inputs are placed just before a PROT_NONE page (guard.h), and the
 * output buffer is too, so a read past the input or a write past the
 * output faults.  Every valid document is also parsed at every
 * truncation, and with an output buffer one byte short.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chat_json.h"
#include "guard.h"

#define OUT_MAX 4096

struct parsed {
    enum chat_json_rc rc;
    struct chat_json_obj obj;
    char out[OUT_MAX];
};

/* Parses len bytes of s, the input ending at a guard page and the output
 * buffer (out_cap bytes) too. */
static enum chat_json_rc parse_guarded(const char *s, size_t len,
                                       size_t out_cap,
                                       struct chat_json_obj *obj,
                                       char *copy_out)
{
    struct guard gin, gout;
    guard_init(&gin, len ? len : 1);
    guard_init(&gout, out_cap ? out_cap : 1);
    const char *in = (const char *)guard_place(&gin, s, len);
    char *out = (char *)gout.base + gout.room - out_cap;

    enum chat_json_rc rc = chat_json_parse(in, len, out, out_cap, obj);
    if (rc == CHAT_JSON_OK && copy_out) {
        /* Point the fields into the caller's copy before unmapping. */
        memcpy(copy_out, out, out_cap);
        for (size_t i = 0; i < obj->n; i++) {
            obj->f[i].key = copy_out + (obj->f[i].key - out);
            obj->f[i].val = copy_out + (obj->f[i].val - out);
        }
    }
    guard_free(&gin);
    guard_free(&gout);
    return rc;
}

static void parse(struct parsed *p, const char *s)
{
    size_t len = strlen(s);
    assert_true(len + 2 * CHAT_JSON_MAX_FIELDS <= OUT_MAX);
    p->rc = parse_guarded(s, len, len + 2 * CHAT_JSON_MAX_FIELDS, &p->obj,
                          p->out);
}

static enum chat_json_rc parse_rc(const char *s)
{
    struct parsed p;
    parse(&p, s);
    if (p.rc != CHAT_JSON_OK)
        assert_int_equal(p.obj.n, 0);
    return p.rc;
}

static void assert_field(const struct parsed *p, const char *key,
                         const char *val, size_t val_len)
{
    const struct chat_json_field *f = chat_json_get(&p->obj, key);
    assert_non_null(f);
    assert_int_equal(f->key_len, strlen(key));
    assert_int_equal(f->val_len, val_len);
    assert_memory_equal(f->val, val, val_len);
    assert_int_equal(f->val[val_len], '\0');
    assert_int_equal(f->key[f->key_len], '\0');
}

/* A valid document must fail at every strict prefix, and when the output
 * buffer is one byte too small, without touching memory it was not
 * given. */
static void check_truncations(const char *s)
{
    size_t len = strlen(s);
    struct chat_json_obj obj;

    for (size_t i = 0; i < len; i++) {
        /* Trailing whitespace is the only thing that may go. */
        size_t j = i;
        while (j < len && strchr(" \t\r\n", s[j]))
            j++;
        if (j == len)
            break;
        assert_int_not_equal(parse_guarded(s, i, OUT_MAX, &obj, NULL),
                             CHAT_JSON_OK);
        assert_int_equal(obj.n, 0);
    }
    /* Find the exact output size it needs, then give one byte less. */
    size_t need = 0;
    while (parse_guarded(s, len, need, &obj, NULL) == CHAT_JSON_ERR_SPACE)
        need++;
    assert_int_equal(parse_guarded(s, len, need, &obj, NULL), CHAT_JSON_OK);
    if (need > 0)
        assert_int_equal(parse_guarded(s, len, need - 1, &obj, NULL),
                         CHAT_JSON_ERR_SPACE);
}

/* ---- the parser ---------------------------------------------------------- */

static void test_chat_json_parses_a_flat_object(void **state)
{
    (void)state;
    struct parsed p;
    const char *doc = "{\"op\":\"say\",\"room\":\"lobby\",\"text\":\"hi\"}";
    parse(&p, doc);
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_int_equal(p.obj.n, 3);
    assert_field(&p, "op", "say", 3);
    assert_field(&p, "room", "lobby", 5);
    assert_field(&p, "text", "hi", 2);
    assert_null(chat_json_get(&p.obj, "nick"));
    assert_null(chat_json_get(&p.obj, "o"));
    check_truncations(doc);
}

static void test_chat_json_accepts_the_empty_object_and_whitespace(void **state)
{
    (void)state;
    struct parsed p;
    parse(&p, "{}");
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_int_equal(p.obj.n, 0);
    parse(&p, " \t\r\n{ \n\"a\" \t: \r\"b\" ,\n \"c\":\"\" } \n");
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_int_equal(p.obj.n, 2);
    assert_field(&p, "a", "b", 1);
    assert_field(&p, "c", "", 0);
    check_truncations(" { \"a\" : \"b\" , \"c\" : \"\" } ");
}

static void test_chat_json_decodes_every_short_escape(void **state)
{
    (void)state;
    struct parsed p;
    const char *doc = "{\"t\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}";
    parse(&p, doc);
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_field(&p, "t", "\"\\/\b\f\n\r\t", 8);
    check_truncations(doc);
}

static void test_chat_json_decodes_unicode_escapes_to_utf8(void **state)
{
    (void)state;
    struct parsed p;
    /* U+0041, U+00E9, U+20AC, U+FFFF, U+1F600 (a surrogate pair), U+10FFFF */
    const char *doc = "{\"t\":\"\\u0041\\u00e9\\u20AC\\uffff"
                      "\\ud83d\\ude00\\uDBFF\\uDFFF\"}";
    parse(&p, doc);
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_field(&p, "t", "A\xC3\xA9\xE2\x82\xAC\xEF\xBF\xBF"
                 "\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF", 17);
    check_truncations(doc);
}

static void test_chat_json_decodes_escapes_in_keys(void **state)
{
    (void)state;
    struct parsed p;
    parse(&p, "{\"\\u006fp\":\"x\"}");
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_field(&p, "op", "x", 1);
}

static void test_chat_json_copies_raw_utf8(void **state)
{
    (void)state;
    struct parsed p;
    const char *doc = "{\"t\":\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\"}";
    parse(&p, doc);
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_field(&p, "t", "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80", 15);
    check_truncations(doc);
}

static void test_chat_json_rejects_lone_surrogates(void **state)
{
    (void)state;
    assert_int_equal(parse_rc("{\"t\":\"\\ud83d\"}"), CHAT_JSON_ERR_SURROGATE);
    assert_int_equal(parse_rc("{\"t\":\"\\ude00\"}"), CHAT_JSON_ERR_SURROGATE);
    assert_int_equal(parse_rc("{\"t\":\"\\ud83dx\"}"), CHAT_JSON_ERR_SURROGATE);
    assert_int_equal(parse_rc("{\"t\":\"\\ud83d\\n\"}"),
                     CHAT_JSON_ERR_SURROGATE);
    assert_int_equal(parse_rc("{\"t\":\"\\ud83d\\u0041\"}"),
                     CHAT_JSON_ERR_SURROGATE);
    assert_int_equal(parse_rc("{\"t\":\"\\ud83d\\ud83d\"}"),
                     CHAT_JSON_ERR_SURROGATE);
    assert_int_equal(parse_rc("{\"t\":\"\\ud83d\\ude0\"}"),
                     CHAT_JSON_ERR_ESCAPE);
}

static void test_chat_json_rejects_nul_escapes(void **state)
{
    (void)state;
    assert_int_equal(parse_rc("{\"t\":\"a\\u0000b\"}"), CHAT_JSON_ERR_NUL);
    assert_int_equal(parse_rc("{\"\\u0000\":\"b\"}"), CHAT_JSON_ERR_NUL);
}

static void test_chat_json_rejects_bad_escapes(void **state)
{
    (void)state;
    assert_int_equal(parse_rc("{\"t\":\"\\x41\"}"), CHAT_JSON_ERR_ESCAPE);
    assert_int_equal(parse_rc("{\"t\":\"\\'\"}"), CHAT_JSON_ERR_ESCAPE);
    assert_int_equal(parse_rc("{\"t\":\"\\U0041\"}"), CHAT_JSON_ERR_ESCAPE);
    assert_int_equal(parse_rc("{\"t\":\"\\u12\"}"), CHAT_JSON_ERR_ESCAPE);
    assert_int_equal(parse_rc("{\"t\":\"\\u12g4\"}"), CHAT_JSON_ERR_ESCAPE);
    assert_int_equal(parse_rc("{\"t\":\"\\u"), CHAT_JSON_ERR_ESCAPE);
    assert_int_equal(parse_rc("{\"t\":\"\\"), CHAT_JSON_ERR_SYNTAX);
}

static void test_chat_json_rejects_raw_control_characters(void **state)
{
    (void)state;
    assert_int_equal(parse_rc("{\"t\":\"a\nb\"}"), CHAT_JSON_ERR_CONTROL);
    assert_int_equal(parse_rc("{\"t\":\"\t\"}"), CHAT_JSON_ERR_CONTROL);
    assert_int_equal(parse_rc("{\"t\x01\":\"b\"}"), CHAT_JSON_ERR_CONTROL);
    /* An embedded NUL byte, given with an explicit length. */
    struct chat_json_obj obj;
    assert_int_equal(parse_guarded("{\"t\":\"a\0b\"}", 11, OUT_MAX, &obj,
                                   NULL), CHAT_JSON_ERR_CONTROL);
    /* DEL is not a control character to JSON. */
    assert_int_equal(parse_rc("{\"t\":\"\x7f\"}"), CHAT_JSON_OK);
}

static void test_chat_json_rejects_invalid_utf8(void **state)
{
    (void)state;
    static const char *bad[] = {
        "{\"t\":\"\x80\"}",                 /* a lone continuation byte */
        "{\"t\":\"\xC0\x80\"}",             /* overlong NUL */
        "{\"t\":\"\xC1\xBF\"}",             /* overlong */
        "{\"t\":\"\xE0\x80\xAF\"}",         /* overlong '/' */
        "{\"t\":\"\xED\xA0\x80\"}",         /* a UTF-16 surrogate */
        "{\"t\":\"\xF0\x80\x80\xAF\"}",     /* overlong */
        "{\"t\":\"\xF4\x90\x80\x80\"}",     /* past U+10FFFF */
        "{\"t\":\"\xF5\x80\x80\x80\"}",
        "{\"t\":\"\xFF\"}",
        "{\"t\":\"\xC3\"}",                 /* truncated by the quote */
        "{\"t\":\"\xE2\x82\"}",
        "{\"t\":\"\xF0\x9F\x98\"}",
        "{\"\xC3\":\"b\"}",                 /* in a key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse_rc(bad[i]), CHAT_JSON_ERR_UTF8);
    /* Truncated by the end of the input. */
    struct chat_json_obj obj;
    assert_int_equal(parse_guarded("{\"t\":\"\xE2\x82", 8, OUT_MAX, &obj,
                                   NULL), CHAT_JSON_ERR_UTF8);
}

static void test_chat_json_rejects_values_that_are_not_strings(void **state)
{
    (void)state;
    static const char *bad[] = {
        "{\"n\":1}", "{\"n\":-1}", "{\"n\":true}", "{\"n\":false}",
        "{\"n\":null}", "{\"n\":{}}", "{\"n\":{\"a\":\"b\"}}", "{\"n\":[]}",
        "{\"a\":\"b\",\"n\":[\"x\"]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse_rc(bad[i]), CHAT_JSON_ERR_NOT_STRING);
}

static void test_chat_json_rejects_malformed_documents(void **state)
{
    (void)state;
    static const char *bad[] = {
        "", " ", "[]", "\"x\"", "1", "null", "{", "}", "{\"a\"}",
        "{\"a\":}", "{\"a\" \"b\"}", "{\"a\":\"b\",}", "{,\"a\":\"b\"}",
        "{\"a\":\"b\" \"c\":\"d\"}", "{'a':'b'}", "{a:\"b\"}",
        "{\"a\":\"b\";}", "{\"a\":\"b", "{\"a\":\"b\"", "{\"a\":\"b\",",
        "{\"a\":undefined}", "\xEF\xBB\xBF{}", "{\"a\"::\"b\"}",
        "{\"a\":\"b\"\v}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse_rc(bad[i]), CHAT_JSON_ERR_SYNTAX);
    struct chat_json_obj obj;
    assert_int_equal(chat_json_parse(NULL, 0, NULL, 0, &obj),
                     CHAT_JSON_ERR_SYNTAX);
}

static void test_chat_json_rejects_bytes_after_the_object(void **state)
{
    (void)state;
    assert_int_equal(parse_rc("{}x"), CHAT_JSON_ERR_TRAILING);
    assert_int_equal(parse_rc("{\"a\":\"b\"}{}"), CHAT_JSON_ERR_TRAILING);
    assert_int_equal(parse_rc("{\"a\":\"b\"} ,"), CHAT_JSON_ERR_TRAILING);
}

static void test_chat_json_rejects_duplicate_keys(void **state)
{
    (void)state;
    assert_int_equal(parse_rc("{\"op\":\"a\",\"op\":\"b\"}"),
                     CHAT_JSON_ERR_DUPLICATE);
    /* The same key spelled two ways is still the same key. */
    assert_int_equal(parse_rc("{\"op\":\"a\",\"\\u006fp\":\"b\"}"),
                     CHAT_JSON_ERR_DUPLICATE);
    assert_int_equal(parse_rc("{\"op\":\"a\",\"ops\":\"b\"}"), CHAT_JSON_OK);
}

static void test_chat_json_bounds_the_number_of_fields(void **state)
{
    (void)state;
    char doc[256] = "{";
    for (int i = 0; i < CHAT_JSON_MAX_FIELDS; i++) {
        char f[16];
        snprintf(f, sizeof f, "%s\"k%d\":\"v\"", i ? "," : "", i);
        strcat(doc, f);
    }
    strcat(doc, "}");
    struct parsed p;
    parse(&p, doc);
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_int_equal(p.obj.n, CHAT_JSON_MAX_FIELDS);
    check_truncations(doc);

    doc[strlen(doc) - 1] = '\0';
    strcat(doc, ",\"kx\":\"v\"}");
    assert_int_equal(parse_rc(doc), CHAT_JSON_ERR_FIELDS);
}

static void test_chat_json_output_never_outgrows_the_input(void **state)
{
    (void)state;
    /* The documented bound: len + 2 per field is always enough. */
    const char *doc = "{\"\":\"\",\"a\":\"\\u00e9\\ud83d\\ude00\"}";
    struct chat_json_obj obj;
    size_t len = strlen(doc);
    assert_int_equal(parse_guarded(doc, len, len + 4, &obj, NULL),
                     CHAT_JSON_OK);
    assert_int_equal(parse_guarded(doc, len, 0, &obj, NULL),
                     CHAT_JSON_ERR_SPACE);
}

static void test_chat_json_names_every_status(void **state)
{
    (void)state;
    for (int rc = CHAT_JSON_OK; rc <= CHAT_JSON_ERR_SPACE; rc++) {
        const char *s = chat_json_strerror((enum chat_json_rc)rc);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
    }
    assert_string_equal(chat_json_strerror(CHAT_JSON_ERR_SYNTAX), "bad json");
}

/* ---- the writer ---------------------------------------------------------- */

static void test_chat_json_escape_escapes_quotes_backslashes_and_controls(void **state)
{
    (void)state;
    char out[128];
    const char in[] = "a\"b\\c\n\r\t\b\f\x01\x1f\x7f/\xC3\xA9";
    long n = chat_json_escape(in, sizeof in - 1, out, sizeof out);
    const char want[] = "a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f/"
                        "\xC3\xA9";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, sizeof want - 1);

    char nul[8];
    assert_int_equal(chat_json_escape("\0", 1, nul, sizeof nul), 6);
    assert_memory_equal(nul, "\\u0000", 6);
}

static void test_chat_json_escape_refuses_a_small_buffer(void **state)
{
    (void)state;
    struct guard g;
    guard_init(&g, 16);
    char *out = (char *)g.base + g.room - 5;
    assert_int_equal(chat_json_escape("abcde", 5, out, 5), 5);
    assert_int_equal(chat_json_escape("abcdef", 6, out, 5), -1);
    assert_int_equal(chat_json_escape("abcd\"", 5, out, 5), -1);
    assert_int_equal(chat_json_escape("\x01", 1, out, 5), -1);
    guard_free(&g);
}

static void test_chat_json_writer_builds_an_object(void **state)
{
    (void)state;
    char buf[256];
    struct chat_jw w;
    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "ev", "msg", 3);
    chat_jw_str(&w, "text", "say \"hi\"\n", 9);
    chat_jw_uint(&w, "members", 0);
    chat_jw_uint(&w, "big", UINT64_MAX);
    chat_jw_bool(&w, "yes", true);
    chat_jw_bool(&w, "no", false);
    long n = chat_jw_end(&w);
    const char want[] = "{\"ev\":\"msg\",\"text\":\"say \\\"hi\\\"\\n\","
                        "\"members\":0,\"big\":18446744073709551615,"
                        "\"yes\":true,\"no\":false}";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(buf, want, sizeof want - 1);

    chat_jw_begin(&w, buf, sizeof buf);
    assert_int_equal(chat_jw_end(&w), 2);
    assert_memory_equal(buf, "{}", 2);
}

static void test_chat_json_writer_reports_overflow_at_every_size(void **state)
{
    (void)state;
    char full[256];
    struct chat_jw w;
    chat_jw_begin(&w, full, sizeof full);
    chat_jw_str(&w, "ev", "error", 5);
    chat_jw_str(&w, "error", "\x01\"", 2);
    chat_jw_uint(&w, "n", 1234);
    long need = chat_jw_end(&w);
    assert_true(need > 0);

    struct guard g;
    guard_init(&g, (size_t)need);
    for (size_t cap = 0; cap <= (size_t)need; cap++) {
        char *buf = (char *)g.base + g.room - cap;
        chat_jw_begin(&w, buf, cap);
        chat_jw_str(&w, "ev", "error", 5);
        chat_jw_str(&w, "error", "\x01\"", 2);
        chat_jw_uint(&w, "n", 1234);
        long n = chat_jw_end(&w);
        if (cap < (size_t)need) {
            assert_int_equal(n, -1);
        } else {
            assert_int_equal(n, need);
            assert_memory_equal(buf, full, (size_t)need);
        }
    }
    guard_free(&g);
}

static void test_chat_json_writer_output_parses_back(void **state)
{
    (void)state;
    /* Every byte value but NUL, as a string, round-trips exactly when
     * the bytes are valid UTF-8: here all of ASCII and some multibyte. */
    char text[200];
    size_t len = 0;
    for (int c = 1; c < 0x80; c++)
        text[len++] = (char)c;
    memcpy(text + len, "\xC3\xA9\xF0\x9F\x98\x80", 6);
    len += 6;

    char buf[1024];
    struct chat_jw w;
    chat_jw_begin(&w, buf, sizeof buf);
    chat_jw_str(&w, "text", text, len);
    long n = chat_jw_end(&w);
    assert_true(n > 0);
    buf[n] = '\0';

    struct parsed p;
    parse(&p, buf);
    assert_int_equal(p.rc, CHAT_JSON_OK);
    assert_field(&p, "text", text, len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_json_parses_a_flat_object),
        cmocka_unit_test(test_chat_json_accepts_the_empty_object_and_whitespace),
        cmocka_unit_test(test_chat_json_decodes_every_short_escape),
        cmocka_unit_test(test_chat_json_decodes_unicode_escapes_to_utf8),
        cmocka_unit_test(test_chat_json_decodes_escapes_in_keys),
        cmocka_unit_test(test_chat_json_copies_raw_utf8),
        cmocka_unit_test(test_chat_json_rejects_lone_surrogates),
        cmocka_unit_test(test_chat_json_rejects_nul_escapes),
        cmocka_unit_test(test_chat_json_rejects_bad_escapes),
        cmocka_unit_test(test_chat_json_rejects_raw_control_characters),
        cmocka_unit_test(test_chat_json_rejects_invalid_utf8),
        cmocka_unit_test(test_chat_json_rejects_values_that_are_not_strings),
        cmocka_unit_test(test_chat_json_rejects_malformed_documents),
        cmocka_unit_test(test_chat_json_rejects_bytes_after_the_object),
        cmocka_unit_test(test_chat_json_rejects_duplicate_keys),
        cmocka_unit_test(test_chat_json_bounds_the_number_of_fields),
        cmocka_unit_test(test_chat_json_output_never_outgrows_the_input),
        cmocka_unit_test(test_chat_json_names_every_status),
        cmocka_unit_test(test_chat_json_escape_escapes_quotes_backslashes_and_controls),
        cmocka_unit_test(test_chat_json_escape_refuses_a_small_buffer),
        cmocka_unit_test(test_chat_json_writer_builds_an_object),
        cmocka_unit_test(test_chat_json_writer_reports_overflow_at_every_size),
        cmocka_unit_test(test_chat_json_writer_output_parses_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
