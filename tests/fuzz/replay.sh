#!/bin/sh
# Replays every fuzz target's seed corpus through a plain main() (no
# libFuzzer needed), so `make check` catches a regression on any seed.
set -e
src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
bld=${top_builddir:-$src}
n=0
for target in http ws utf8 confval ipc static chat_json admin; do
    "$bld/tests/fuzz/replay_$target" "$src/tests/fuzz/corpus/$target"
    n=$((n + 1))
done
echo "fuzz corpus replay: $n passed, 0 failed"
