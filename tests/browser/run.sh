#!/bin/sh
# The browser test of the chat demo (chat.test.mjs): installs
# playwright-core as pinned by package-lock.json, then runs the test
# against the built daemon in Debian's Chromium.  Needs Node.js 20 or
# later, npm and /usr/bin/chromium: `sh scripts/deps.sh test` installs
# them.  A missing tool fails the run; it is never skipped.
#   top_srcdir, top_builddir, SNOWD, CHROMIUM: see chat.test.mjs
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "browser: $*" >&2; echo "browser: 0 passed, 1 failed"; exit 1; }

command -v node >/dev/null 2>&1 || fail "node not found (sh scripts/deps.sh test)"
command -v npm >/dev/null 2>&1 || fail "npm not found (sh scripts/deps.sh test)"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] 2>/dev/null ||
    fail "node $(node --version) is too old: playwright-core needs 20 or later"
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || fail "$chromium not found (apt-get install chromium)"

cd "$here" || exit 1
# Install when missing or when the lock file changed since.
if [ ! -f node_modules/playwright-core/package.json ] ||
   [ package-lock.json -nt node_modules/.package-lock.json ]; then
    timeout 300 npm ci --no-audit --no-fund --loglevel=error ||
        fail "npm ci failed in $here"
fi
exec timeout 300 node chat.test.mjs
