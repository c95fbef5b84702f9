#!/bin/sh
# The whole test suite: installs what is missing, builds, then runs
#  1. make check: cmocka unit tests, fuzz corpus replay, integration tests
#  2. the chat demo end to end in Chromium (tests/browser)
#  3. make check again under AddressSanitizer + UndefinedBehaviorSanitizer
#  4. a plugin built out of tree against the installed header
#  5. each libFuzzer target for a short while
#  6. make distcheck (skip with SNOWD_SKIP_DISTCHECK=1)
set -e
cd "$(dirname "$0")/.."
top=$(pwd)
sh scripts/deps.sh test
sh scripts/build.sh

step() { printf '\n==== %s\n' "$*"; }

step "make check"
make -j"$(nproc)" check || { cat tests/*/*.log tests/integration/run.sh.log 2>/dev/null | tail -n 200; exit 1; }

step "browser: the chat demo in Chromium"
sh tests/browser/run.sh

step "make check under ASan + UBSan"
# A copy of the distributed tree, so the source tree's own build stays.
rm -rf build-asan
make -s distdir distdir=build-asan >/dev/null
(cd build-asan &&
 ./configure -q --enable-sanitizers CC=gcc &&
 # The supervision tests crash workers on purpose: let SIGSEGV kill them
 # as it would without ASan, so the master sees and reports the signal.
 ASAN_OPTIONS=detect_leaks=1:handle_segv=0 make -j"$(nproc)" check) ||
    { tail -n 200 build-asan/tests/integration/run.sh.log 2>/dev/null; exit 1; }

step "out-of-tree plugin against the installed snowd.h"
sh tests/install/out_of_tree.sh

step "libFuzzer targets"
sh tests/fuzz/run.sh "${SNOWD_FUZZ_SECONDS:-20}"

if [ "${SNOWD_SKIP_DISTCHECK:-0}" != 1 ]; then
    step "make distcheck"
    make -j"$(nproc)" distcheck >/dev/null
fi
step "all tests passed"
