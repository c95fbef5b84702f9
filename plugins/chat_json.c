/*
 * chat_json.c - the strict JSON subset of the chat protocol: a parser for
 * one flat object of string values, and a writer that escapes what it is
 * given.  See chat_json.h for the contract.
 *
 * Trust boundary: everything handed to chat_json_parse() comes from a
 * client.  The parser reads strictly inside [in, in + len), writes
 * strictly inside [out, out + out_cap), has no recursion (nothing nests)
 * and runs in one pass, so its time and memory are linear in the input.
 */
#include "chat_json.h"

#include <string.h>

struct parser {
    const unsigned char *p;
    const unsigned char *end;
    char *out;
    char *out_end;
};

static void skip_ws(struct parser *ps)
{
    /* RFC 8259 section 2: the four whitespace characters, nothing else. */
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
                               *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits of a \u escape at ps->p (just after the 'u'). */
static enum chat_json_rc read_hex4(struct parser *ps, uint32_t *cp)
{
    uint32_t v = 0;

    if (ps->end - ps->p < 4)
        return CHAT_JSON_ERR_ESCAPE;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0)
            return CHAT_JSON_ERR_ESCAPE;
        v = v << 4 | (uint32_t)h;
    }
    ps->p += 4;
    *cp = v;
    return CHAT_JSON_OK;
}

/* Appends code point cp (a scalar value, not a surrogate) as UTF-8. */
static enum chat_json_rc put_utf8(struct parser *ps, uint32_t cp)
{
    unsigned char b[4];
    size_t n;

    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if ((size_t)(ps->out_end - ps->out) < n)
        return CHAT_JSON_ERR_SPACE;
    memcpy(ps->out, b, n);
    ps->out += n;
    return CHAT_JSON_OK;
}

/* Decodes the escape after a backslash (ps->p is just past it). */
static enum chat_json_rc parse_escape(struct parser *ps)
{
    uint32_t cp, lo;
    enum chat_json_rc rc;

    if (ps->p == ps->end)
        return CHAT_JSON_ERR_SYNTAX;
    switch (*ps->p++) {
    case '"': return put_utf8(ps, '"');
    case '\\': return put_utf8(ps, '\\');
    case '/': return put_utf8(ps, '/');
    case 'b': return put_utf8(ps, '\b');
    case 'f': return put_utf8(ps, '\f');
    case 'n': return put_utf8(ps, '\n');
    case 'r': return put_utf8(ps, '\r');
    case 't': return put_utf8(ps, '\t');
    case 'u': break;
    default: return CHAT_JSON_ERR_ESCAPE;
    }
    if ((rc = read_hex4(ps, &cp)) != CHAT_JSON_OK)
        return rc;
    if (cp == 0)
        return CHAT_JSON_ERR_NUL;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return CHAT_JSON_ERR_SURROGATE;       /* a low half first */
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* A high half must be followed at once by \u and a low half
         * (RFC 8259 section 7). */
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return CHAT_JSON_ERR_SURROGATE;
        ps->p += 2;
        if ((rc = read_hex4(ps, &lo)) != CHAT_JSON_OK)
            return rc;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return CHAT_JSON_ERR_SURROGATE;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    return put_utf8(ps, cp);
}

/* Length of the UTF-8 sequence starting at p (whose first byte is
 * >= 0x80), or 0 when the bytes there are not well-formed UTF-8
 * (Unicode 15, table 3-7: no overlongs, no surrogates, nothing past
 * U+10FFFF). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Parses the string at ps->p (which is at its opening quote) into the
 * output buffer, NUL-terminated. */
static enum chat_json_rc parse_string(struct parser *ps, const char **s,
                                      size_t *n)
{
    char *start = ps->out;
    enum chat_json_rc rc;

    ps->p++;                                  /* the opening quote */
    for (;;) {
        if (ps->p == ps->end)
            return CHAT_JSON_ERR_SYNTAX;      /* unterminated */
        unsigned char c = *ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c == '\\') {
            ps->p++;
            if ((rc = parse_escape(ps)) != CHAT_JSON_OK)
                return rc;
            continue;
        }
        if (c < 0x20)
            return CHAT_JSON_ERR_CONTROL;
        size_t len = 1;
        if (c >= 0x80 && (len = utf8_len(ps->p, ps->end)) == 0)
            return CHAT_JSON_ERR_UTF8;
        if ((size_t)(ps->out_end - ps->out) < len)
            return CHAT_JSON_ERR_SPACE;
        memcpy(ps->out, ps->p, len);
        ps->out += len;
        ps->p += len;
    }
    if (ps->out == ps->out_end)
        return CHAT_JSON_ERR_SPACE;
    *ps->out++ = '\0';
    *s = start;
    *n = (size_t)(ps->out - start) - 1;
    return CHAT_JSON_OK;
}

/* What to call the token at ps->p, where a value should start. */
static enum chat_json_rc bad_value(const struct parser *ps)
{
    if (ps->p == ps->end)
        return CHAT_JSON_ERR_SYNTAX;
    /* Something JSON would take (an object, array, number or literal) is
     * "not a string"; anything else is just not JSON. */
    unsigned char c = *ps->p;
    if (c == '{' || c == '[' || c == '-' || (c >= '0' && c <= '9') ||
        c == 't' || c == 'f' || c == 'n')
        return CHAT_JSON_ERR_NOT_STRING;
    return CHAT_JSON_ERR_SYNTAX;
}

static bool has_key(const struct chat_json_obj *obj, const char *key,
                    size_t len)
{
    for (size_t i = 0; i < obj->n; i++)
        if (obj->f[i].key_len == len && memcmp(obj->f[i].key, key, len) == 0)
            return true;
    return false;
}

static enum chat_json_rc parse_members(struct parser *ps,
                                       struct chat_json_obj *obj)
{
    enum chat_json_rc rc;

    for (;;) {
        struct chat_json_field f;

        if (ps->p == ps->end || *ps->p != '"')
            return CHAT_JSON_ERR_SYNTAX;
        if (obj->n == CHAT_JSON_MAX_FIELDS)
            return CHAT_JSON_ERR_FIELDS;
        if ((rc = parse_string(ps, &f.key, &f.key_len)) != CHAT_JSON_OK)
            return rc;
        skip_ws(ps);
        if (ps->p == ps->end || *ps->p != ':')
            return CHAT_JSON_ERR_SYNTAX;
        ps->p++;
        skip_ws(ps);
        if (ps->p == ps->end || *ps->p != '"')
            return bad_value(ps);
        if ((rc = parse_string(ps, &f.val, &f.val_len)) != CHAT_JSON_OK)
            return rc;
        if (has_key(obj, f.key, f.key_len))
            return CHAT_JSON_ERR_DUPLICATE;
        obj->f[obj->n++] = f;
        skip_ws(ps);
        if (ps->p == ps->end)
            return CHAT_JSON_ERR_SYNTAX;
        if (*ps->p == '}') {
            ps->p++;
            return CHAT_JSON_OK;
        }
        if (*ps->p != ',')
            return CHAT_JSON_ERR_SYNTAX;
        ps->p++;
        skip_ws(ps);
    }
}

enum chat_json_rc chat_json_parse(const char *in, size_t len,
                                  char *out, size_t out_cap,
                                  struct chat_json_obj *obj)
{
    struct parser ps = {
        .p = (const unsigned char *)in,
        .end = (const unsigned char *)in + len,
        .out = out,
        .out_end = out + out_cap,
    };
    enum chat_json_rc rc = CHAT_JSON_OK;

    obj->n = 0;
    if (!in && len)
        return CHAT_JSON_ERR_SYNTAX;
    skip_ws(&ps);
    if (ps.p == ps.end || *ps.p != '{')
        return CHAT_JSON_ERR_SYNTAX;
    ps.p++;
    skip_ws(&ps);
    if (ps.p < ps.end && *ps.p == '}')
        ps.p++;
    else
        rc = parse_members(&ps, obj);
    if (rc == CHAT_JSON_OK) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            rc = CHAT_JSON_ERR_TRAILING;
    }
    if (rc != CHAT_JSON_OK)
        obj->n = 0;
    return rc;
}

const struct chat_json_field *chat_json_get(const struct chat_json_obj *obj,
                                            const char *key)
{
    size_t len = strlen(key);

    for (size_t i = 0; i < obj->n; i++)
        if (obj->f[i].key_len == len && memcmp(obj->f[i].key, key, len) == 0)
            return &obj->f[i];
    return NULL;
}

const char *chat_json_strerror(enum chat_json_rc rc)
{
    switch (rc) {
    case CHAT_JSON_OK: return "ok";
    case CHAT_JSON_ERR_SYNTAX: return "bad json";
    case CHAT_JSON_ERR_NOT_STRING: return "values must be strings";
    case CHAT_JSON_ERR_ESCAPE: return "bad escape";
    case CHAT_JSON_ERR_SURROGATE: return "lone surrogate";
    case CHAT_JSON_ERR_NUL: return "\\u0000 is not allowed";
    case CHAT_JSON_ERR_CONTROL: return "control character in string";
    case CHAT_JSON_ERR_UTF8: return "invalid utf-8";
    case CHAT_JSON_ERR_FIELDS: return "too many fields";
    case CHAT_JSON_ERR_DUPLICATE: return "duplicate key";
    case CHAT_JSON_ERR_TRAILING: return "trailing bytes after the object";
    case CHAT_JSON_ERR_SPACE: return "message too long";
    }
    return "bad json";
}

/* ---- the writer -------------------------------------------------------- */

long chat_json_escape(const char *s, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;

        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            if (c < 0x20 || c == 0x7F) {
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                n = 6;
            } else {
                esc[0] = (char)c;
                n = 1;
            }
        }
        if (cap - o < n)
            return -1;
        memcpy(out + o, esc, n);
        o += n;
    }
    return (long)o;
}

static void jw_put(struct chat_jw *w, const char *s, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void jw_key(struct chat_jw *w, const char *key)
{
    jw_put(w, w->first ? "\"" : ",\"", w->first ? 1 : 2);
    w->first = false;
    jw_put(w, key, strlen(key));
    jw_put(w, "\":", 2);
}

void chat_jw_begin(struct chat_jw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = false;
    w->first = true;
    jw_put(w, "{", 1);
}

void chat_jw_str(struct chat_jw *w, const char *key,
                 const char *val, size_t val_len)
{
    jw_key(w, key);
    jw_put(w, "\"", 1);
    if (!w->overflow) {
        long n = chat_json_escape(val, val_len, w->buf + w->len,
                                  w->cap - w->len);
        if (n < 0)
            w->overflow = true;
        else
            w->len += (size_t)n;
    }
    jw_put(w, "\"", 1);
}

void chat_jw_uint(struct chat_jw *w, const char *key, uint64_t val)
{
    char digits[20];
    size_t n = 0;

    jw_key(w, key);
    do {
        digits[sizeof digits - ++n] = (char)('0' + val % 10);
        val /= 10;
    } while (val);
    jw_put(w, digits + sizeof digits - n, n);
}

void chat_jw_bool(struct chat_jw *w, const char *key, bool val)
{
    jw_key(w, key);
    jw_put(w, val ? "true" : "false", val ? 4 : 5);
}

long chat_jw_end(struct chat_jw *w)
{
    jw_put(w, "}", 1);
    return w->overflow ? -1 : (long)w->len;
}
