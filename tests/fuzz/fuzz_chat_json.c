/*
 * fuzz_chat_json.c - libFuzzer target for the chat plugin's JSON subset
 * (plugins/chat_json.c).  The input is the client message, whole.
 *
 * Cross-checks, aborting on any mismatch:
 *  - the status is one of the named ones, and an error leaves no field;
 *  - on success: at most CHAT_JSON_MAX_FIELDS fields, distinct keys,
 *    every key and value lies inside the output buffer, is
 *    NUL-terminated with no NUL inside, and is valid UTF-8 (checked by a
 *    separate decoder here);
 *  - the documented output bound (len + 2 per field) holds, and exactly
 *    the bytes used suffice while one fewer gives CHAT_JSON_ERR_SPACE;
 *  - writing the fields back with the writer and parsing that again
 *    gives the same fields (escaping round-trips);
 *  - chat_json_escape of the raw input leaves no quote, backslash or
 *    control byte unescaped and stays within 6 bytes per input byte.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iplugins \
 *       tests/fuzz/fuzz_chat_json.c plugins/chat_json.c -o /tmp/fuzz_chat_json
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat_json.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

/* A reference UTF-8 check written differently from the parser's: decode
 * each sequence to a code point, then reject overlongs, surrogates and
 * values past U+10FFFF by the code point. */
static bool utf8_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

static bool inside(const char *p, size_t len, const char *buf, size_t cap)
{
    return p >= buf && (size_t)(p - buf) <= cap && len < cap - (size_t)(p - buf);
}

static void check_fields(const struct chat_json_obj *obj, const char *out,
                         size_t cap)
{
    CHECK(obj->n <= CHAT_JSON_MAX_FIELDS);
    for (size_t i = 0; i < obj->n; i++) {
        const struct chat_json_field *f = &obj->f[i];
        CHECK(inside(f->key, f->key_len, out, cap));
        CHECK(inside(f->val, f->val_len, out, cap));
        CHECK(f->key[f->key_len] == '\0' && strlen(f->key) == f->key_len);
        CHECK(f->val[f->val_len] == '\0' && strlen(f->val) == f->val_len);
        CHECK(utf8_ok((const unsigned char *)f->key, f->key_len));
        CHECK(utf8_ok((const unsigned char *)f->val, f->val_len));
        for (size_t j = 0; j < i; j++)
            CHECK(obj->f[j].key_len != f->key_len ||
                  memcmp(obj->f[j].key, f->key, f->key_len) != 0);
        CHECK(chat_json_get(obj, f->key) == f);
    }
}

static bool same_fields(const struct chat_json_obj *a,
                        const struct chat_json_obj *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->f[i].key_len != b->f[i].key_len ||
            a->f[i].val_len != b->f[i].val_len ||
            memcmp(a->f[i].key, b->f[i].key, a->f[i].key_len) != 0 ||
            memcmp(a->f[i].val, b->f[i].val, a->f[i].val_len) != 0)
            return false;
    return true;
}

/* The writer takes literal keys; build the object by hand with the same
 * escaper so that decoded keys round-trip too. */
static size_t rewrite(const struct chat_json_obj *obj, char *buf, size_t cap)
{
    size_t o = 0;
    buf[o++] = '{';
    for (size_t i = 0; i < obj->n; i++) {
        if (i)
            buf[o++] = ',';
        buf[o++] = '"';
        long n = chat_json_escape(obj->f[i].key, obj->f[i].key_len,
                                  buf + o, cap - o);
        CHECK(n >= 0);
        o += (size_t)n;
        buf[o++] = '"';
        buf[o++] = ':';
        buf[o++] = '"';
        n = chat_json_escape(obj->f[i].val, obj->f[i].val_len, buf + o,
                             cap - o);
        CHECK(n >= 0);
        o += (size_t)n;
        buf[o++] = '"';
    }
    buf[o++] = '}';
    return o;
}

static void check_escape(const uint8_t *data, size_t size)
{
    size_t cap = 6 * size;
    char *out = malloc(cap + 1);
    CHECK(out);
    long n = chat_json_escape((const char *)data, size, out, cap);
    CHECK(n >= 0 && (size_t)n >= size && (size_t)n <= cap);
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        CHECK(c >= 0x20 && c != 0x7F && c != '"');
        if (c == '\\') {
            CHECK(i + 1 < n);
            i++;    /* the escaped character */
            CHECK(strchr("\"\\bfnrtu", out[i]) != NULL);
        }
    }
    if (size > 0)
        CHECK(chat_json_escape((const char *)data, size, out,
                               (size_t)n - 1) == -1);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cap = size + 2 * CHAT_JSON_MAX_FIELDS;
    char *out = malloc(cap ? cap : 1);
    struct chat_json_obj obj;
    CHECK(out);

    enum chat_json_rc rc = chat_json_parse((const char *)data, size, out,
                                           cap, &obj);
    CHECK(rc >= CHAT_JSON_OK && rc <= CHAT_JSON_ERR_SPACE);
    /* With the documented bound, the buffer is never the problem. */
    CHECK(rc != CHAT_JSON_ERR_SPACE);
    if (rc != CHAT_JSON_OK) {
        CHECK(obj.n == 0);
    } else {
        check_fields(&obj, out, cap);

        size_t used = 0;
        for (size_t i = 0; i < obj.n; i++)
            used += obj.f[i].key_len + obj.f[i].val_len + 2;
        CHECK(used <= cap);
        char *exact = malloc(used ? used : 1);
        struct chat_json_obj again;
        CHECK(exact);
        CHECK(chat_json_parse((const char *)data, size, exact, used,
                              &again) == CHAT_JSON_OK);
        CHECK(same_fields(&obj, &again));
        if (used > 0)
            CHECK(chat_json_parse((const char *)data, size, exact, used - 1,
                                  &again) == CHAT_JSON_ERR_SPACE);
        free(exact);

        /* Round trip through the escaper. */
        size_t wcap = 6 * used + 4 * obj.n + 2;
        char *w = malloc(wcap);
        char *out2 = malloc(wcap + 2 * CHAT_JSON_MAX_FIELDS);
        CHECK(w && out2);
        size_t wlen = rewrite(&obj, w, wcap);
        CHECK(chat_json_parse(w, wlen, out2, wcap + 2 * CHAT_JSON_MAX_FIELDS,
                              &again) == CHAT_JSON_OK);
        CHECK(same_fields(&obj, &again));
        free(w);
        free(out2);
    }
    check_escape(data, size);
    free(out);
    return 0;
}
