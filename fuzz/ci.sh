#!/usr/bin/env bash
# CI smoke run of the fuzz targets: builds them all once, then runs each for a bounded time
# on its seed corpus (rebuilt from testdata/ by seed.py into a temporary directory, so the
# tree stays clean). Fails on any crash, panic, timeout or out-of-memory; skips (exit 0, with
# a clear message) only when cargo-fuzz cannot be installed.
#
#   bash fuzz/ci.sh                   # every target, FUZZ_SECONDS (default 15) each
#   FUZZ_SECONDS=60 bash fuzz/ci.sh   # longer
#   FUZZ_TARGETS="payloads receive" bash fuzz/ci.sh   # only those
#
# The instrumented build lives outside the tree, in RUNHOOK_FUZZ_TARGET_DIR (default
# ~/.cache/runhook-fuzz-target), so that CI's fresh clones reuse it: the first run on a machine
# builds every dependency (about 5 minutes on 2 cores), later ones only runhook's own crates.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-15}"
all_targets=(skyvern_signature browser_use_signature standard_webhooks header_token canonical_differential canonical_sorted_differential payloads receive)
# FUZZ_TARGETS="a b" runs only those.
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is missing; installing it (at most 10 minutes)"
    if ! timeout 600 cargo install cargo-fuzz --locked --quiet; then
        echo "fuzz: skipping fuzz smoke: cargo-fuzz could not be installed"
        exit 0
    fi
fi

# libFuzzer needs sanitizer flags that stable rustc accepts only with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
target_dir="${RUNHOOK_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runhook-fuzz-target}"
echo "fuzz: building ${#targets[@]} targets in $target_dir"
cargo fuzz build -O --target-dir "$target_dir"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if command -v python3 >/dev/null 2>&1; then
    python3 seed.py --out "$work/corpus" >/dev/null
else
    echo "fuzz: python3 missing; running from empty corpora"
fi

for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    # The receive target keeps state across inputs on purpose (its stores and dead letters
    # fill up, bounded): leak detection would flag that and slow it down a hundredfold.
    leaks=1
    [[ "$target" == receive ]] && leaks=0
    log="$work/$target.log"
    echo "fuzz: $target for ${seconds}s"
    if ! cargo fuzz run -O --target-dir "$target_dir" "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -detect_leaks="$leaks" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED; the input that failed:"
        for input in "$artifacts"/*; do
            [[ -f "$input" ]] || continue
            echo "  $(basename "$input"): $(head -c 300 "$input" | od -An -c | head -n 8)"
        done
        echo "fuzz: reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O $target <that input>"
        exit 1
    fi
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/fuzz: $target /" || true
done
echo "fuzz: all ${#targets[@]} targets ran without a failure"
