#!/bin/sh
# Installs snowd into a temporary prefix, builds a plugin out of tree
# with only `pkg-config --cflags snowd`, and checks that the installed
# daemon loads it and serves it over a real WebSocket.
set -e
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# A fresh configure with its own prefix, as a packager would do it.
make -s distdir distdir="$tmp/tree" >/dev/null
(cd "$tmp/tree" && ./configure -q --prefix="$tmp/prefix" &&
 make -s -j"$(nproc)" >/dev/null && make -s install >/dev/null)
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
mkdir -p "$tmp/plugins" "$tmp/src"
cat > "$tmp/src/upper.c" <<'C'
#include <snowd/snowd.h>
#include <ctype.h>
#include <stdlib.h>

static int upper(snow_actor *self, enum snow_kind kind, const void *data,
                 size_t len)
{
    char *out = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        out[i] = (char)toupper(((const unsigned char *)data)[i]);
    int rc = snow_send(self, kind, out, len);
    free(out);
    return rc;
}

static const struct snow_handler handlers[] = {
    { .name = "upper", .on_message = upper },
};
SNOW_PLUGIN(.name = "upper", .version = "1", .handlers = handlers,
            .nhandlers = 1);
C
# shellcheck disable=SC2046
cc -Wall -Wextra -Werror -shared -fPIC $(pkg-config --cflags snowd) \
    "$tmp/src/upper.c" -o "$tmp/plugins/upper.so"

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/snowd.ini" <<INI
[server]
listen = 127.0.0.1:$port
plugin_dir = $tmp/plugins
[route /upper]
handler = upper
INI
"$tmp/prefix/sbin/snowd" -t -c "$tmp/snowd.ini"
"$tmp/prefix/sbin/snowd" -c "$tmp/snowd.ini" 2>"$tmp/log" &
pid=$!
/usr/bin/python3 - "$port" <<'PY'
import asyncio, sys, websockets
async def main(port):
    for _ in range(100):
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/upper")
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        sys.exit("snowd did not start")
    await ws.send("hello, plugin")
    got = await asyncio.wait_for(ws.recv(), 5)
    await ws.close()
    assert got == "HELLO, PLUGIN", got
asyncio.run(main(int(sys.argv[1])))
PY
test -f "$tmp/prefix/share/man/man8/snowd.8"
test -f "$tmp/prefix/etc/snowd/snowd.ini"
grep -q "^plugin_dir = $tmp/prefix/lib/snowd" "$tmp/prefix/etc/snowd/snowd.ini"
grep -q "^static = $tmp/prefix/share/snowd/www/chat$" "$tmp/prefix/etc/snowd/snowd.ini"
test -f "$tmp/prefix/share/snowd/www/chat/index.html"
"$tmp/prefix/sbin/snowd" -t -c "$tmp/prefix/etc/snowd/snowd.ini"
echo "out-of-tree plugin: 1 passed, 0 failed"
