#!/usr/bin/env python3
"""(Re)builds the seed corpora of the fuzz targets from the repository's test data.

    python3 fuzz/seed.py                # writes fuzz/corpus/<target>/
    python3 fuzz/seed.py --out DIR      # writes DIR/<target>/

Sources: testdata/skyvern-canonical.jsonl (inputs made with Skyvern's own signing code, with
their canonical form and signature), the provider payloads in testdata/payloads/, and the
realistic Skyvern run in testdata/skyvern-run-pretty.json. Nothing outside the repository is
read.

Each seed is named by the SHA-1 of its content, as libFuzzer names the inputs it keeps, so
running this again adds nothing twice and never removes what fuzzing found. The delivery
format of the header and receive targets is described in fuzz/src/lib.rs.
"""

import argparse
import base64
import hashlib
import hmac
import json
import pathlib
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent

# Keys and constants shared with the targets (fuzz_targets/*.rs).
SKYVERN_VECTOR_KEY = b"sk_test"
SKYVERN_KEY = b"sk_fuzz_current_key"
TOKEN = "Bearer webrun-fuzz-token"
PATH_SECRET = "s3cr3t-segment"
STANDARD_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_NOW = 1614265330
SKYVERN_NOW = 1769873016
BROWSER_USE_KEY = b"bu_fuzz_current_secret"
BROWSER_USE_OLD_KEY = b"bu_fuzz_old_secret"
BROWSER_USE_NOW = 1796640000

# Routes of the receive target (fuzz_targets/receive.rs), by flag value.
ROUTE_SKYVERN, ROUTE_TINYFISH, ROUTE_WEBRUN, ROUTE_WEBRUN_AI = 0, 1, 2, 3
ROUTE_SMARTBROWSE, ROUTE_STANDARD, ROUTE_EXTRACTOR, ROUTE_SMALL = 4, 5, 6, 7
SIGN = 1 << 3
COMPLETE = 1 << 4


def delivery(flags, path, headers, body):
    """One input in the delivery format: flags byte, path line, header lines, blank line, body."""
    head = path.encode() + b"".join(
        b"\n" + name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        for name, value in headers
    )
    return bytes([flags]) + head + b"\n\n" + body


def skyvern_sig(key, body):
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def standard_sig(id_, ts, body):
    key = base64.b64decode(STANDARD_KEY.removeprefix("whsec_"))
    mac = hmac.new(key, f"{id_}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def load_sources():
    vectors, seen = [], set()
    for path in (ROOT / "testdata/skyvern-canonical.jsonl",):
        if path.is_file():
            # Not splitlines(): it also splits at U+2028 and other separators inside strings.
            for line in path.read_text(encoding="utf-8").split("\n"):
                if line.strip() and line not in seen:
                    seen.add(line)
                    vectors.append(json.loads(line))
    payloads = {}
    for path in sorted((ROOT / "testdata/payloads").glob("*.json")):
        payloads[path.stem] = path.read_bytes()
    for path in (ROOT / "testdata/skyvern-run-pretty.json",):
        if path.is_file():
            payloads["skyvern-run-pretty"] = path.read_bytes()
    return vectors, payloads


def compact(body):
    """The body as Skyvern would send it (compact), when it is plain JSON."""
    try:
        return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    except ValueError:
        return body


def seeds(vectors, payloads):
    """Yields (target, bytes) pairs."""
    # Vector inputs are JSON texts in Python's dialect (str; surrogates escaped as \\udXXX).
    inputs = [v["input"].encode("utf-8", "surrogatepass") for v in vectors]
    canonicals = [v["canonical"].encode("utf-8") for v in vectors if v["canonical"] is not None]
    bodies = list(payloads.values())
    skyvern = [b for name, b in payloads.items() if name.startswith("skyvern")]

    # Nesting around the limits: serde_json's (128) and the lenient reader's (1000).
    deep = []
    for depth in (127, 129, 500, 999, 1000, 1001):
        arrays = b"[" * depth + b"]" * depth
        deep.append(b'{"run_id":"r","taskId":"t","score":NaN,"output":' + arrays + b"}")
        deep.append(arrays)
    bodies_and_deep = bodies + deep

    # The canonicalizer and the payload readers: raw JSON texts.
    for body in inputs + canonicals + bodies_and_deep:
        yield "canonical_differential", body
        yield "canonical_sorted_differential", body
    for body in inputs + bodies_and_deep + [compact(b) for b in bodies]:
        yield "payloads", body

    # Skyvern signatures: every vector as Skyvern sent it (signature of the canonical form,
    # received re-serialized), with and without the fallback and the timestamp window.
    for v in vectors:
        if v["signature"] is None:
            continue
        body = v["input"].encode("utf-8", "surrogatepass")
        headers = [("x-skyvern-signature", v["signature"]), ("x-skyvern-timestamp", str(SKYVERN_NOW))]
        yield "skyvern_signature", delivery(0b10, "/webhooks/skyvern", headers, body)
    for body in skyvern:
        for flags in (0b00, 0b01, 0b10, 0b11, 0b100, 0b1010, 0b10101, 0b100110):
            headers = [
                ("content-type", "application/json"),
                ("x-skyvern-signature", skyvern_sig(SKYVERN_KEY, compact(body))),
                ("x-skyvern-timestamp", str(SKYVERN_NOW - 5)),
            ]
            yield "skyvern_signature", delivery(flags, "/webhooks/skyvern", headers, compact(body))
            yield "skyvern_signature", delivery(flags, "/webhooks/skyvern", headers, body)

    # Browser Use: its payloads as sent (spaced, unsorted) and as its sorted form, signed over
    # the sorted form (Python's own json.dumps here), in the older header, and unsigned.
    for name, body in payloads.items():
        if not name.startswith("browser-use"):
            continue
        dump = json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True).encode()
        for key in (BROWSER_USE_KEY, BROWSER_USE_OLD_KEY):
            sig = hmac.new(key, f"{BROWSER_USE_NOW}.".encode() + dump, hashlib.sha256).hexdigest()
            headers = [("x-browser-use-signature", sig), ("x-browser-use-timestamp", str(BROWSER_USE_NOW))]
            for sent in (body, dump):
                yield "browser_use_signature", delivery(0, "/", headers, sent)
            legacy = [("x-webhook-signature", skyvern_sig(key, body))]
            yield "browser_use_signature", delivery(0, "/", legacy, body)
        for flags in (0b1, 0b10, 0b100, 0b1001, 0b10101):
            yield "browser_use_signature", delivery(flags, "/", [], body)

    # Standard Webhooks: the specification's known answer, and signed payloads.
    spec_body = b'{"test": 2432232314}'
    spec_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    yield "standard_webhooks", delivery(0, "/", [
        ("webhook-id", spec_id),
        ("webhook-timestamp", str(STANDARD_NOW)),
        ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
    ], spec_body)
    for i, body in enumerate(bodies):
        id_ = f"msg_{i:04d}"
        for ts, flags in ((STANDARD_NOW, 0), (STANDARD_NOW - 299, 0), (STANDARD_NOW + 400, 3), (STANDARD_NOW, 4)):
            sig = standard_sig(id_, ts, body)
            yield "standard_webhooks", delivery(flags, "/", [
                ("webhook-id", id_),
                ("webhook-timestamp", str(ts)),
                ("webhook-signature", f"v1a,ignored v1,AAAA {sig}"),
            ], body)

    # Header tokens and path secrets.
    for flags, path, headers in (
        (0x00, "/webhooks/webrun", [("authorization", TOKEN)]),
        (0x00, "/webhooks/webrun", [("Authorization", "  padded token ")]),
        (0x00, "/webhooks/webrun", [("authorization", TOKEN), ("authorization", "Bearer other")]),
        (0x01, "/hooks", [("X-Webhook-Token", TOKEN), ("other", "x")]),
        (0x03, "/hooks", [("x-token", "a"), ("x-extra", "chosen-token")]),
        (0x00, f"/webhooks/smartbrowse/{PATH_SECRET}", []),
        (0x00, f"/webhooks/smartbrowse/{PATH_SECRET}?q=1#frag", []),
        (0x30, f"/webhooks/{PATH_SECRET}/smartbrowse", []),
        (0x20, "/webhooks//tf7Qm2Kx9sLwPzR4/", [("authorization", "Bearer nope")]),
    ):
        yield "header_token", delivery(flags, path, headers, b"{}")

    # The whole pipeline: each provider's payloads on its route, as sent and signed.
    def route_of(name):
        if name.startswith("skyvern"):
            return [ROUTE_SKYVERN, ROUTE_EXTRACTOR]
        if name.startswith("tinyfish"):
            return [ROUTE_TINYFISH, ROUTE_SMALL]
        if name == "webrun-ai-response":
            return [ROUTE_WEBRUN_AI]
        if name.startswith("webrun"):
            return [ROUTE_WEBRUN]
        return [ROUTE_SMARTBROWSE, ROUTE_STANDARD]

    for name, body in payloads.items():
        for route in route_of(name):
            for sent in {body, compact(body)}:
                base = [("content-type", "application/json")]
                if route in (ROUTE_SKYVERN, ROUTE_EXTRACTOR):
                    signed = base + [("x-skyvern-signature", skyvern_sig(SKYVERN_KEY, sent))]
                    yield "receive", delivery(route, "/webhooks/skyvern", signed, sent)
                    yield "receive", delivery(route | SIGN | COMPLETE, "/webhooks/skyvern", base, sent)
                elif route in (ROUTE_WEBRUN, ROUTE_WEBRUN_AI):
                    yield "receive", delivery(route, "/webhooks/webrun", base + [("authorization", TOKEN)], sent)
                elif route == ROUTE_SMARTBROWSE:
                    yield "receive", delivery(route, f"/webhooks/smartbrowse/{PATH_SECRET}", base, sent)
                    yield "receive", delivery(route, "/webhooks/smartbrowse", base + [("authorization", TOKEN)], sent)
                elif route == ROUTE_STANDARD:
                    headers = base + [
                        ("webhook-id", "msg_1"),
                        ("webhook-timestamp", str(STANDARD_NOW)),
                        ("webhook-signature", standard_sig("msg_1", STANDARD_NOW, sent)),
                    ]
                    yield "receive", delivery(route, "/webhooks/sb", headers, sent)
                    yield "receive", delivery(route | SIGN, "/webhooks/sb", headers[:3], sent)
                else:
                    yield "receive", delivery(route, "/webhooks/tinyfish", base, sent)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=FUZZ / "corpus")
    args = parser.parse_args()
    vectors, payloads = load_sources()
    if not vectors or not payloads:
        sys.exit("seed.py: testdata/ not found; run from a checkout of the repository")
    counts = {}
    for target, data in seeds(vectors, payloads):
        directory = args.out / target
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / hashlib.sha1(data).hexdigest()
        if not path.exists():
            path.write_bytes(data)
            counts[target] = counts.get(target, 0) + 1
    for target in sorted(counts):
        print(f"seed.py: {counts[target]:5} new seeds in {args.out / target}")


if __name__ == "__main__":
    main()
