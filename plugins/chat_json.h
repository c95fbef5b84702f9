/*
 * chat_json.h - the little JSON the chat plugin speaks.
 *
 * Input: one JSON object whose values are all strings, e.g.
 *   {"op":"say","room":"lobby","text":"h\u00e9llo \ud83d\ude00"}
 * That is the whole of the chat protocol, so that is all the parser
 * accepts: nested objects, arrays, numbers, true/false/null, duplicate
 * keys, more than CHAT_JSON_MAX_FIELDS members, bytes after the object,
 * raw control characters in strings, bad escapes, lone surrogates and
 * invalid UTF-8 are all refused with a named status.  Escapes (\" \\ \/
 * \b \f \n \r \t \uXXXX, surrogate pairs included) are decoded to UTF-8.
 *
 * Output: a writer that builds an object into a caller's buffer and
 * escapes every string it is given, so that nothing a client sent can
 * break out of its string.
 *
 * Neither side allocates, logs or does I/O: the caller owns every
 * buffer, and results point into the caller's buffers.  The input is
 * hostile; nothing is read past `len`.
 */
#ifndef SNOWD_CHAT_JSON_H
#define SNOWD_CHAT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHAT_JSON_MAX_FIELDS 8

enum chat_json_rc {
    CHAT_JSON_OK = 0,
    CHAT_JSON_ERR_SYNTAX,      /* not a JSON object, or malformed */
    CHAT_JSON_ERR_NOT_STRING,  /* a value that is not a string */
    CHAT_JSON_ERR_ESCAPE,      /* an unknown or malformed escape */
    CHAT_JSON_ERR_SURROGATE,   /* a \u escape that is a lone surrogate */
    CHAT_JSON_ERR_NUL,         /* \u0000, refused so that every decoded
                                  string is also a C string */
    CHAT_JSON_ERR_CONTROL,     /* a raw control character in a string */
    CHAT_JSON_ERR_UTF8,        /* bytes that are not UTF-8 */
    CHAT_JSON_ERR_FIELDS,      /* more than CHAT_JSON_MAX_FIELDS members */
    CHAT_JSON_ERR_DUPLICATE,   /* a key given twice */
    CHAT_JSON_ERR_TRAILING,    /* bytes after the object */
    CHAT_JSON_ERR_SPACE        /* the output buffer is too small */
};

/* One member: key and value, decoded, each NUL-terminated in the
 * caller's output buffer.  Decoding refuses \u0000, so each string's
 * length is also its strlen. */
struct chat_json_field {
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
};

struct chat_json_obj {
    size_t n;
    struct chat_json_field f[CHAT_JSON_MAX_FIELDS];
};

/* Parses in[0..len) as one object of string values.  Decoded keys and
 * values are written to out (out_cap bytes; len + 2 * CHAT_JSON_MAX_FIELDS
 * is always enough, as decoding never grows a string) and described in
 * *obj.  Returns CHAT_JSON_OK or an error; on error *obj is empty. */
enum chat_json_rc chat_json_parse(const char *in, size_t len,
                                  char *out, size_t out_cap,
                                  struct chat_json_obj *obj);

/* The member named key (NUL-terminated), or NULL. */
const struct chat_json_field *chat_json_get(const struct chat_json_obj *obj,
                                            const char *key);

/* A short, static description of a status ("bad escape", ...). */
const char *chat_json_strerror(enum chat_json_rc rc);

/* ---- the writer -------------------------------------------------------- */

/* Builds {"k":"v","n":1,...} in a fixed buffer.  Once a call would not
 * fit, the writer stops writing and chat_jw_end() reports the overflow. */
struct chat_jw {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
    bool first;
};

void chat_jw_begin(struct chat_jw *w, char *buf, size_t cap);
/* Members.  Keys are the plugin's own literals, written as they are;
 * string values are escaped with chat_json_escape(). */
void chat_jw_str(struct chat_jw *w, const char *key,
                 const char *val, size_t val_len);
void chat_jw_uint(struct chat_jw *w, const char *key, uint64_t val);
void chat_jw_bool(struct chat_jw *w, const char *key, bool val);
/* Closes the object.  Returns its length, or -1 when it did not fit. */
long chat_jw_end(struct chat_jw *w);

/* Escapes s[0..len) as the inside of a JSON string into out (no quotes).
 * Returns the length written, or -1 when it does not fit in cap bytes.
 * ", \ and control characters (below 0x20, and 0x7f) are escaped; other
 * bytes are copied. */
long chat_json_escape(const char *s, size_t len, char *out, size_t cap);

#endif
