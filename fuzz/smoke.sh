#!/usr/bin/env bash
# Fuzz the parser targets for a fixed time each (see fuzz/README.md).
#
#   fuzz/smoke.sh                  # every target 12 s (the smoke run, about 45 s with a built fuzz/target)
#   fuzz/smoke.sh 600              # every target 10 minutes (issue 14's long run)
#   fuzz/smoke.sh 600 head         # one target
#
# Installs cargo-fuzz from crates.io if it is missing (prints SKIPPED and
# exits 0 if that is impossible, e.g. offline). Builds with the default
# (stable) toolchain and RUSTC_BOOTSTRAP=1 for the -Z flags cargo-fuzz
# passes; FUZZ_TOOLCHAIN=nightly uses `cargo +nightly fuzz` instead. The corpus that
# a run grows goes to fuzz/work/<target>/ (not committed); the seeds in
# fuzz/corpus/<target>/ are only read. Exits non-zero on a crash, a leak, a
# hang (-timeout) or an out-of-memory, with the input in fuzz/artifacts/.
set -euo pipefail
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR/.."
SECONDS_EACH="${1:-12}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(head chunked differential ws_frames proxy_header uwsgi_packet)
log() { printf '[fuzz/smoke.sh] %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  if ! cargo install cargo-fuzz --locked >/dev/null 2>&1; then
    log "SKIPPED: cargo-fuzz is not installed and cannot be installed here"
    exit 0
  fi
fi
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  cargo=(cargo "+$FUZZ_TOOLCHAIN" fuzz)
else
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo fuzz)
fi

for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
  log "$t: ${SECONDS_EACH}s (log: fuzz/work/$t.log)"
  rc=0
  "${cargo[@]}" run -O "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=30 -print_final_stats=1 \
    >"fuzz/work/$t.log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY)' "fuzz/work/$t.log" >&2 || true
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "fuzz/work/$t.log" >&2
    log "$t FAILED (exit $rc), see fuzz/work/$t.log and fuzz/artifacts/$t/"
    exit 1
  fi
done
log "all passed"
