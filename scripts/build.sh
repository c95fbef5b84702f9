#!/bin/sh
# Configures (once) and builds snowd in the source tree.
set -e
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh >/dev/null
[ -f Makefile ] || ./configure -q "$@"
make -j"$(nproc)" >/dev/null
