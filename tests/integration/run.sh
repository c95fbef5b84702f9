#!/bin/sh
# Runs the integration tests against the built daemon (used by make check).
#   SNOWD          the snowd binary (default: $top_builddir/snowd)
#   SNOWD_PLUGINS  colon-separated plugin .so files to serve
here=$(cd "$(dirname "$0")" && pwd)
top=${top_builddir:-$(cd "$here/../.." && pwd)}
SNOWD=${SNOWD:-$top/snowd}
plugins=$top/plugins/.libs
kits=$top/tests/plugins/.libs
SNOWD_PLUGINS=${SNOWD_PLUGINS:-$plugins/echo.so:$plugins/counter.so:$plugins/ticker.so:$plugins/chat.so:$kits/testkit.so:$kits/actorkit.so}
PYTHONDONTWRITEBYTECODE=1
export SNOWD SNOWD_PLUGINS PYTHONDONTWRITEBYTECODE
/usr/bin/python3 -m pytest -q -p no:cacheprovider "$here" "$@"
exit $?
