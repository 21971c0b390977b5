"""What Skyvern does to a webhook payload, timed on the same inputs as `benches/canonical.rs`.

`json.loads`, every whole float to an int, then `json.dumps` with Skyvern's options. Prints the
median MB/s (MB = 10^6 bytes, as criterion's throughput) of the pretty and compact inputs.

Run from the workspace root: `python3 crates/runhook-core/benches/canonical_python.py`

With `--each-line`, it instead normalizes each line of standard input (one document a line) to
standard output, as `runhook canonicalize --each-line` does: `benches/canonical_vs_python.sh`
times the two processes side by side.

With `--serve ROOT`, it prints the SHA-256 of its canonical bytes for the fixture, then answers
each line `pretty SECONDS` or `compact SECONDS` on standard input with the MB/s it sustains on
that input for about that long: `benches/canonical_vs_python.rs` alternates these samples with
its own, so that both sides of each ratio are measured on the machine in the same state.
"""

import hashlib
import json
import statistics
import sys
import time
from pathlib import Path


def normalize(x):
    if isinstance(x, float):
        return int(x) if x.is_integer() else x
    if isinstance(x, dict):
        return {k: normalize(v) for k, v in x.items()}
    if isinstance(x, list):
        return [normalize(v) for v in x]
    return x


def skyvern_bytes(body: bytes) -> bytes:
    payload = normalize(json.loads(body))
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def median_mb_per_s(body: bytes, samples: int = 30, seconds_per_sample: float = 0.1) -> float:
    n = 1
    while True:  # Calibrate the batch so one sample takes about `seconds_per_sample`.
        start = time.perf_counter()
        for _ in range(n):
            skyvern_bytes(body)
        if time.perf_counter() - start >= seconds_per_sample / 4:
            break
        n *= 2
    n = max(1, int(n * seconds_per_sample / (time.perf_counter() - start)))
    rates = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(n):
            skyvern_bytes(body)
        elapsed = time.perf_counter() - start
        rates.append(len(body) * n / elapsed / 1e6)
    return statistics.median(rates)


def rate_for(body: bytes, seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    while True:
        skyvern_bytes(body)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return len(body) * n / elapsed / 1e6


def fixtures(root: Path) -> dict:
    """The pretty fixture as stored, and its canonical (compact) form."""
    pretty = (root / "testdata" / "skyvern-run-pretty.json").read_bytes()
    return {"pretty": pretty, "compact": skyvern_bytes(pretty)}


def serve(root: Path) -> None:
    docs = fixtures(root)
    print(f"python {sys.version.split()[0]} {hashlib.sha256(docs['compact']).hexdigest()}", flush=True)
    for line in sys.stdin:
        name, seconds = line.split()
        print(f"{rate_for(docs[name], float(seconds)):.4f}", flush=True)


def each_line() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        out.write(skyvern_bytes(line.removesuffix(b"\n")))
        out.write(b"\n")


def main() -> None:
    if sys.argv[1:] == ["--each-line"]:
        each_line()
        return
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]))
        return
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
    print(f"python {sys.version.split()[0]}")
    for name, body in fixtures(root).items():
        print(f"canonical/python/{name}: {len(body)} bytes, median {median_mb_per_s(body):.2f} MB/s")


if __name__ == "__main__":
    main()
