#!/usr/bin/env bash
# Fuzz the STOMP frame decoder with libFuzzer for a bounded time (default 60 s):
#   bash scripts/fuzz.sh [SECONDS]
# Works on the stable toolchain: libfuzzer-sys with SanitizerCoverage enabled through stable -C
# flags (what cargo-fuzz passes, minus the nightly-only AddressSanitizer; the code under test has no
# unsafe, so ASan would add nothing). A crash leaves its input in crates/stomp/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../crates/stomp/fuzz"
SECONDS_TO_RUN="${1:-${FUZZ_SECONDS:-60}}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS away from build scripts (they must not be instrumented).
TARGET="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --target "$TARGET" --bin decode_frame -q
mkdir -p corpus artifacts
# Seed the corpus with a few valid frames so the fuzzer starts from the grammar.
printf 'CONNECTED\nversion:1.2\nheart-beat:10000,10000\n\n\0' > corpus/connected
printf 'MESSAGE\ndestination:/amq/queue/q\nmessage-id:1\nsubscription:s\nack:a1\ncontent-length:5\n\nhello\0\n' > corpus/message
printf 'ERROR\nmessage:bad\\cframe\n\nbody\0' > corpus/error
"./target/$TARGET/release/decode_frame" corpus -max_total_time="$SECONDS_TO_RUN" -artifact_prefix=artifacts/ -print_final_stats=1
