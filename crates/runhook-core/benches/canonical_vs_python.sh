#!/usr/bin/env bash
# The canonicalizer against Skyvern's own Python normalizer, side by side in one run:
#
# 1. the CLI: `runhook canonicalize --each-line` and `canonical_python.py --each-line` on the
#    same 25 MB input (3 000 copies of testdata/skyvern-run-pretty.json, one single-line
#    document a line), each a whole process (start-up included), timed in turn by
#    `farm-bench` (or `hyperfine` when farm-bench is absent), after checking that the two
#    outputs are byte-identical;
# 2. the library: `benches/canonical_vs_python.rs`, which alternates a runhook sample and a
#    Python sample (`canonical_python.py --serve`) on the same document, round by round, and
#    prints the median of the rounds' ratios for the pretty and the compact fixture.
#
# Run from the workspace root: `bash crates/runhook-core/benches/canonical_vs_python.sh`
# (RUNS=5 by default; SKIP_LIBRARY=1 times the CLI only; ROUNDS and SECONDS go to the
# library bench). Honours CARGO_TARGET_DIR.
set -euo pipefail

root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
runs=${RUNS:-5}
python=${PYTHON:-python3}
script=$root/crates/runhook-core/benches/canonical_python.py
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --quiet --release -p runhook-cli
runhook=$target/release/runhook

"$python" - "$root/testdata/skyvern-run-pretty.json" "$work/input.jsonl" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
line = json.dumps(doc, ensure_ascii=False).encode("utf-8")  # single line, ", " and ": "
open(sys.argv[2], "wb").write((line + b"\n") * 3000)
EOF
echo "input: $(wc -c <"$work/input.jsonl") bytes, 3000 lines; $("$python" --version)"

"$python" "$script" --each-line <"$work/input.jsonl" >"$work/python.out"
"$runhook" canonicalize --each-line "$work/input.jsonl" >"$work/runhook.out"
if cmp -s "$work/python.out" "$work/runhook.out"; then
    echo "outputs: byte-identical ($(wc -c <"$work/runhook.out") bytes)"
else
    echo "outputs DIFFER:" >&2
    cmp "$work/python.out" "$work/runhook.out" >&2 || true
    exit 1
fi

cli_rust="$runhook canonicalize --each-line $work/input.jsonl"
cli_python="$python $script --each-line"
echo
echo "== CLI, process start included (A = runhook, B = python; B/A is the speed-up) =="
if command -v farm-bench >/dev/null; then
    farm-bench -n "$runs" --timeout 600 \
        --vs "sh -c 'exec $cli_python <$work/input.jsonl >/dev/null'" \
        -- sh -c "exec $cli_rust >/dev/null"
else
    hyperfine --runs "$runs" --warmup 1 -N \
        "sh -c 'exec $cli_rust >/dev/null'" \
        "sh -c 'exec $cli_python <$work/input.jsonl >/dev/null'"
fi

if [ "${SKIP_LIBRARY:-0}" = 1 ]; then
    exit 0
fi
echo
echo "== library, in process: runhook and Python in alternation, round by round =="
cargo bench --quiet -p runhook-core --bench canonical_vs_python
