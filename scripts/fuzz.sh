#!/bin/sh
# Fuzz scir's input parsers for a bounded time (not part of CI).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      default 300
#
# Targets (fuzz/fuzz_targets/): `config` (any bytes as pipeline.yaml through
# config::parse and config::load) and `parquet_table` (any bytes as a table
# through table::schema_of, inspect, read). Needs a nightly toolchain and
# cargo-fuzz:  rustup toolchain install nightly && cargo install cargo-fuzz
# Corpora grow in fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/);
# crashes land in fuzz/artifacts/<target>/ — turn each into a regression test
# (tests/reliability/fuzz_regressions.rs) before fixing it. Runs niced: the
# machine may be shared.
set -eu
secs="${1:-300}"
cd "$(dirname "$0")/../fuzz"
nice -n 19 cargo +nightly fuzz build -O
status=0
for target in config parquet_table; do
    mkdir -p "corpus/$target"
    echo "== $target: ${secs}s"
    # -rss_limit_mb: a table that asks for gigabytes is a finding too.
    nice -n 19 cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 || status=1
done
ls artifacts/*/ 2>/dev/null && echo "crashes above: see fuzz/artifacts/" || echo "no crashes"
exit $status
