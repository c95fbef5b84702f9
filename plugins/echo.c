/*
 * echo - sends every message back as it came: text as text, binary as
 * binary.  The smallest complete snowd plugin.
 */
#include <snowd/snowd.h>

static int echo_message(snow_actor *self, enum snow_kind kind,
                        const void *data, size_t len)
{
    return snow_send(self, kind, data, len);
}

static const struct snow_handler handlers[] = {
    { .name = "echo", .on_message = echo_message },
};

SNOW_PLUGIN(.name = "echo", .version = "1.0",
            .handlers = handlers, .nhandlers = 1);
