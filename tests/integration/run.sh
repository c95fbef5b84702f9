#!/bin/sh
# Runs the integration tests against the built daemon (used by make check).
#   SNOWD          the snowd binary (default: $top_builddir/snowd)
#   SNOWD_PLUGINS  colon-separated plugin .so files to serve
here=$(cd "$(dirname "$0")" && pwd)
top=${top_builddir:-$(cd "$here/../.." && pwd)}
SNOWD=${SNOWD:-$top/snowd}
SNOWD_PLUGINS=${SNOWD_PLUGINS:-$top/plugins/.libs/echo.so:$top/tests/plugins/.libs/testkit.so}
PYTHONDONTWRITEBYTECODE=1
export SNOWD SNOWD_PLUGINS PYTHONDONTWRITEBYTECODE
/usr/bin/python3 -m pytest -q -p no:cacheprovider "$here" "$@"
exit $?
