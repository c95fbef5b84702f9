#!/bin/sh
# Installs the Debian 12 packages snowd needs, if any are missing.
#   scripts/deps.sh            build and run
#   scripts/deps.sh test       ... and run the test suite
#   scripts/deps.sh bench      ... and run the benchmarks against peers
set -e

BUILD="build-essential autoconf automake libtool pkg-config libev-dev \
libinih-dev libssl-dev libsystemd-dev libcmocka-dev"
TEST="python3 python3-pytest python3-websockets clang libclang-rt-14-dev \
mandoc systemd"
BENCH="libwebsockets-dev nodejs node-ws util-linux"

want="$BUILD"
for extra in "$@"; do
    case "$extra" in
    test) want="$want $TEST" ;;
    bench) want="$want $BENCH" ;;
    *) echo "deps.sh: unknown set '$extra' (test, bench)" >&2; exit 2 ;;
    esac
done

missing=
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
