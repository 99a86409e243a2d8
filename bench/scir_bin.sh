# Sourced by the bench scripts: sets SCIR to a scir binary. Unless SCIR already names one,
# builds it with SCIR_BENCH_PROFILE (default dev: every crate the model's time goes through
# is at opt-level 3 there; see Cargo.toml) into CARGO_TARGET_DIR (default ROOT/target).
if [[ -z "${SCIR:-}" ]]; then
  _profile="${SCIR_BENCH_PROFILE:-dev}"
  (cd "$ROOT" && cargo build --profile "$_profile" --bin scir >&2)
  [[ "$_profile" == dev ]] && _dir=debug || _dir="$_profile"
  SCIR="${CARGO_TARGET_DIR:-$ROOT/target}/$_dir/scir"
fi
