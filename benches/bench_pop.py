"""Cache-hit cost of proof of possession in the Python door: a plain Bearer hit beside a hit
bound to a certificate from each source (the TLS layer's SSL_CLIENT_CERT, and a trusted
proxy's header in each format) and a DPoP hit (a fresh ES256 or RS256 proof per request:
signature, claims, replay cache, thumbprint). One process, one run, median and p99.

    python benches/bench_pop.py [ITERATIONS]        (default 20000)
    python benches/bench_pop.py --c-inputs DIR N     the inputs of tests/c/bench_pop.c
"""

from __future__ import annotations

import json
import ssl
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import forwarded_certs  # noqa: E402
import jwt_tools  # noqa: E402
import oidc_as  # noqa: E402
from fake_as import MAPPING, FakeAS, active_claims  # noqa: E402
from tokenward.external_oauth2_token import ExternalAuth2Protocol  # noqa: E402

PEM = (ROOT / "tests" / "data" / "x5t-vector.pem").read_text()
DER = ssl.PEM_cert_to_DER_cert(PEM)
X5T = forwarded_certs.x5t_s256(PEM)
URL = "https://api.example/v1/vnf_instances"
TOKEN = "t" * 42 + "0"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


# Each filter has its own in-process AS answering the claims it was built for; the check call
# in main() is the one miss that caches TOKEN, and the timed calls are all hits.
_SERVERS: list[FakeAS] = []


def options(url: str, **extra: str) -> dict[str, str]:
    return {
        "introspect_endpoint": url,
        "audience": "https://as",
        "client_id": "rs",
        "client_secret": "s",
        **MAPPING,
        **extra,
    }


def filter_with(cnf: dict[str, str] | None, **extra: str) -> ExternalAuth2Protocol:
    answer = json.dumps(active_claims(cnf=cnf) if cnf else active_claims()).encode()
    fake = FakeAS(lambda form, headers: (200, answer))
    _SERVERS.append(fake)
    return ExternalAuth2Protocol(app, options(fake.url, **extra))


WARM_UP = 1000


def measure(call: Callable[[int], Any], iterations: int) -> tuple[float, float]:
    """Calls ``call(i)`` with distinct ``i`` (a DPoP proof is good once): a warm-up, then
    the timed calls."""
    for i in range(WARM_UP):
        call(i)
    samples = []
    for i in range(WARM_UP, WARM_UP + iterations):
        t0 = time.perf_counter_ns()
        call(i)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000


def c_inputs(directory: Path, count: int) -> None:
    """The certificate forms and DPoP proofs tests/c/bench_pop.c reads (see its header)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "x5t").write_text(X5T + "\n")
    forms = forwarded_certs.forms(PEM)
    (directory / "forms").write_text("".join(f"{k}\t{v}\n" for k, v in forms.items()))
    for alg in ("ES256", "RS256"):
        key = oidc_as.new_private_key(alg)
        token = f"dpop-{alg}-token"
        (directory / f"{alg}.jkt").write_text(jwt_tools.jwk_thumbprint(jwt_tools.public_jwk(key)) + "\n")
        proofs = (jwt_tools.dpop_proof(key, "GET", URL, token=token) for _ in range(count + 1))
        (directory / f"{alg}.proofs").write_text("".join(p + "\n" for p in proofs))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--c-inputs":
        c_inputs(Path(sys.argv[2]), int(sys.argv[3]))
        return
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/v1/vnf_instances",
        "HTTP_HOST": "api.example",
        "wsgi.url_scheme": "https",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
        "REMOTE_ADDR": "127.0.0.1",
    }
    proxy = {"client_cert_header": "X-SSL-Client-Cert", "trusted_proxies": "127.0.0.1", "thumbprint_verify": "true"}
    forms = forwarded_certs.forms(PEM)
    cases: list[tuple[str, ExternalAuth2Protocol, Callable[[int], dict[str, Any]]]] = [
        ("Bearer, unbound", filter_with(None), lambda i: base),
        (
            "Bearer, SSL_CLIENT_CERT (PEM)",
            filter_with({"x5t#S256": X5T}, thumbprint_verify="true"),
            lambda i: {**base, "SSL_CLIENT_CERT": PEM},
        ),
    ]
    for fmt, value in forms.items():
        wsgi = filter_with({"x5t#S256": X5T}, client_cert_header_format=fmt, **proxy)
        cases.append((f"Bearer, proxy header {fmt}", wsgi, lambda i, v=value: {**base, "HTTP_X_SSL_CLIENT_CERT": v}))
    for alg in ("ES256", "RS256"):
        key = oidc_as.new_private_key(alg)
        jkt = jwt_tools.jwk_thumbprint(jwt_tools.public_jwk(key))
        wsgi = filter_with({"jkt": jkt}, dpop="allowed")
        count = iterations + WARM_UP + 1
        t0 = time.perf_counter()
        proofs = [jwt_tools.dpop_proof(key, "GET", URL, token=TOKEN) for _ in range(count)]
        print(f"({count} {alg} proofs made in {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        dpop = {**base, "HTTP_AUTHORIZATION": f"DPoP {TOKEN}"}
        cases.append((f"DPoP {alg} proof", wsgi, lambda i, p=proofs, d=dpop: {**d, "HTTP_DPOP": p[i]}))

    print(f"\nPython door (CPython {sys.version.split()[0]}), WSGI cache hits, {iterations} calls each, 1 thread")
    print(f"| {'case':<36} | median µs | p99 µs  | added to a Bearer hit |")
    print(f"|{'-' * 38}|-----------|---------|-----------------------|")
    plain = None
    for name, wsgi, environ_of in cases:
        status: list[str] = []

        def start(s: str, h: Any, e: Any = None, out: list[str] = status) -> None:
            out.append(s)

        # The check call (the one miss) uses the last proof; measure() uses the others.
        wsgi(dict(environ_of(iterations + WARM_UP)), start)
        assert status and status[-1].startswith("200"), (name, status)
        median, p99 = measure(lambda i, w=wsgi, f=environ_of: w(dict(f(i)), lambda *a: None), iterations)
        plain = median if plain is None else plain
        print(f"| {name:<36} | {median:>9.2f} | {p99:>7.2f} | {median - plain:>+21.2f} |")


if __name__ == "__main__":
    main()
