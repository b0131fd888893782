"""Cache-hit latency of the Python door for the same cases as tests/c/bench_hit.c (run by
scripts/c-bench.sh right after the C benchmark, so the figures sit side by side).

Usage: python benches/bench_python_hit.py CERT_PEM X5T [ITERATIONS]"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from fake_as import MAPPING, FakeAS, active_claims
from tokenward.external_oauth2_token import ExternalAuth2Protocol


def claims(x5t: str | None) -> dict[str, Any]:
    return active_claims(cnf={"x5t#S256": x5t}) if x5t else active_claims()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def measure(call: Callable[[], Any], iterations: int) -> tuple[float, float]:
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000


def main() -> None:
    cert_pem, x5t = open(sys.argv[1]).read(), sys.argv[2]
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
    print(f"\nPython door (CPython {sys.version.split()[0]}), cache hits, {iterations} calls each, 1 thread")
    print(f"{'case':<40} {'lookup() median/p99 µs':>24} {'WSGI call median/p99 µs':>26}")
    for name, length, bound in [
        ("43 B opaque, unbound", 43, False),
        ("1.2 KB JWT-shaped, unbound", 1200, False),
        ("43 B opaque, bound (PEM cert)", 43, True),
        ("1.2 KB JWT-shaped, bound (PEM cert)", 1200, True),
    ]:
        answer = json.dumps(claims(x5t if bound else None)).encode()
        fake = FakeAS(lambda form, headers, a=answer: (200, a))
        options = {
            "introspect_endpoint": fake.url,
            "audience": "https://as",
            "client_id": "rs",
            "client_secret": "s",
            "thumbprint_verify": str(bound),
            **MAPPING,
        }
        wsgi = ExternalAuth2Protocol(app, options)
        token = ("eyJ" + "x" * (length - 4)) if length > 100 else "t" * (length - 1)
        token += "0"
        auth = f"Bearer {token}"
        cert = cert_pem if bound else None
        assert wsgi.authenticator.authenticate(auth, cert).allowed  # the one miss
        fake.close()
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_AUTHORIZATION": auth}
        if bound:
            environ["SSL_CLIENT_CERT"] = cert_pem
        assert wsgi.authenticator.lookup(auth, cert).allowed
        native = wsgi.authenticator
        lookup = measure(lambda n=native, a=auth, c=cert: n.lookup(a, c), iterations)
        full = measure(lambda w=wsgi, e=environ: w(dict(e), lambda *a: None), iterations)
        print(f"{name:<40} {lookup[0]:>11.2f} / {lookup[1]:<10.2f} {full[0]:>12.2f} / {full[1]:<10.2f}")


if __name__ == "__main__":
    main()
