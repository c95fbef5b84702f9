#!/bin/sh
# Quick start: installs what is missing, builds, and runs snowd in the
# foreground on conf/snowd.ini (ws://127.0.0.1:8080/echo).  Ctrl-C stops it.
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh
sh scripts/build.sh
exec ./snowd -c conf/snowd.ini "$@"
