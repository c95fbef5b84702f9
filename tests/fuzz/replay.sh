#!/bin/sh
# Replays every fuzz target's seed corpus through a plain main() (no
# libFuzzer needed), so `make check` catches a regression on any seed.
set -e
src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
bld=${top_builddir:-$src}
for target in http ws utf8 confval ipc; do
    "$bld/tests/fuzz/replay_$target" "$src/tests/fuzz/corpus/$target"
done
echo "fuzz corpus replay: 5 passed, 0 failed"
