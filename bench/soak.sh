#!/usr/bin/env bash
# Soak test (issue 14): 30 minutes of mixed load on a sync and a gthread
# ferrocorn, HUP every minute, a random worker SIGKILLed every 20 s; see the
# docstring of bench/soak.py and "Soak test" in bench/README.md.
#
#   bench/soak.sh                    # 30 minutes
#   bench/soak.sh --duration 90      # a quick check of the harness
#
# Builds target/release/ferrocorn if it is missing (FERROCORN_BIN to use
# another binary); the summary is also written to bench/results/soak.json.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
BIN="${FERROCORN_BIN:-$REPO_ROOT/target/release/ferrocorn}"
[ -x "$BIN" ] || (cd "$REPO_ROOT" && cargo build --release)
mkdir -p "$BENCH_DIR/results"
exec python3 "$BENCH_DIR/soak.py" --bin "$BIN" --out "$BENCH_DIR/results/soak.json" "$@"
