#!/bin/sh
# Installs the Debian 12 packages snowd needs, if any are missing.
#   scripts/deps.sh            build and run
#   scripts/deps.sh test       ... and run the test suite (the browser test
#                              included: Chromium, Node.js and npm)
#   scripts/deps.sh bench      ... and run the benchmarks against peers
set -e

BUILD="build-essential autoconf automake libtool pkg-config libev-dev \
libinih-dev libssl-dev libsystemd-dev libcmocka-dev"
TEST="python3 python3-pytest python3-websockets python3-prometheus-client \
clang libclang-rt-14-dev mandoc systemd chromium openssl"
BENCH="libwebsockets-dev nodejs node-ws util-linux"

want="$BUILD"
node=no
for extra in "$@"; do
    case "$extra" in
    test) want="$want $TEST"; node=yes ;;
    bench) want="$want $BENCH" ;;
    *) echo "deps.sh: unknown set '$extra' (test, bench)" >&2; exit 2 ;;
    esac
done

missing=
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
# Node.js and npm may come from elsewhere than Debian (a machine may have
# a newer Node.js with its own npm, which Debian's npm package conflicts
# with), so look for the commands rather than the packages.
if [ "$node" = yes ] && { ! command -v node >/dev/null 2>&1 ||
                          ! command -v npm >/dev/null 2>&1; }; then
    missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0

echo "deps.sh: installing$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
