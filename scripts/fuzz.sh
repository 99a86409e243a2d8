#!/bin/sh
# Fuzz scir's input parsers for a bounded time (not part of CI).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      default 300
#
#   scripts/fuzz.sh SECONDS TARGET...          only these targets
#
# Targets (fuzz/fuzz_targets/): `config` (any bytes as pipeline.yaml through
# config::parse and config::load), `parquet_table` (any bytes as a table
# through table::schema_of, inspect, read), `gguf` (any bytes as a GGUF file
# through `scir model import`), `model_dir` (config.json + model.safetensors
# through Model::load), `tokenizer` (tokenizer.json + tokenizer_config.json +
# chat_template.jinja, loaded, rendered, encoded, decoded) and `judge_template`
# (any text as a judge template, compiled and rendered). Seeds: fuzz/seeds/
# (the model-file ones written by `cargo test -- --ignored write_fuzz_seeds`)
# and stages/templates/ for judge_template. Needs a nightly toolchain and
# cargo-fuzz:  rustup toolchain install nightly && cargo install cargo-fuzz
# Corpora grow in fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/);
# crashes land in fuzz/artifacts/<target>/ — turn each into a regression test
# (tests/reliability/fuzz_regressions.rs) before fixing it. Runs niced: the
# machine may be shared.
set -eu
secs="${1:-300}"
[ $# -gt 0 ] && shift
targets="${*:-config parquet_table gguf model_dir tokenizer judge_template}"
cd "$(dirname "$0")/../fuzz"
nice -n 19 cargo +nightly fuzz build -O
status=0
for target in $targets; do
    mkdir -p "corpus/$target"
    seeds="seeds/$target"
    [ "$target" = judge_template ] && seeds="../stages/templates"
    echo "== $target: ${secs}s"
    # -rss_limit_mb: a table that asks for gigabytes is a finding too.
    nice -n 19 cargo +nightly fuzz run -O "$target" "corpus/$target" "$seeds" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 || status=1
done
found=$(find artifacts -type f 2>/dev/null)
if [ -n "$found" ]; then echo "crashes (see fuzz/artifacts/):"; echo "$found"; else echo "no crashes"; fi
exit $status
