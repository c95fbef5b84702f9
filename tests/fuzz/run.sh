#!/bin/sh
# Builds each libFuzzer target with clang (ASan + UBSan) and runs it for
# SECONDS (default 20) on a scratch copy of its seed corpus.  A crash
# fails the run and leaves the input in tests/fuzz/crashes/.
set -e
seconds=${1:-20}
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p tests/fuzz/crashes
core="src/utf8.c src/ws.c src/http.c src/handshake.c src/route.c src/confval.c \
    src/ipc.c src/names.c src/static.c src/admin_http.c plugins/chat_json.c"
for target in http ws utf8 confval ipc static chat_json admin; do
    # shellcheck disable=SC2086
    clang -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -Isrc -Iinclude -Iplugins \
        "tests/fuzz/fuzz_$target.c" $core -lcrypto -o "$out/fuzz_$target"
    mkdir -p "$out/corpus_$target"
    cp tests/fuzz/corpus/"$target"/* "$out/corpus_$target/"
    echo "fuzz_$target: ${seconds}s"
    "$out/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix=tests/fuzz/crashes/ "$out/corpus_$target" \
        2>"$out/log_$target" || { tail -n 40 "$out/log_$target"; exit 1; }
    grep -E "stat::number_of_executed_units" "$out/log_$target" || true
done
