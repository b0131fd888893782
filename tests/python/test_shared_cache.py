"""The shared cache tier with real memcached and redis-server processes: hosts share answers,
entries are MAC'ed or encrypted as configured, keys never collide with keystonemiddleware's, a
down or slow cache server degrades to introspection, never to an error."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import oidc_as
import pytest
from cache_servers import (
    Cluster,
    Server,
    memcached_get,
    memcached_keys,
    memcached_stats,
    redis_cli,
    redis_keys,
    start_memcached,
    start_redis,
    start_redis_tls,
)
from conftest import call, introspection_options
from tokenward import ConfigurationError
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app


@pytest.fixture(scope="module")
def memcached() -> Iterator[Server]:
    with start_memcached() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[Server]:
    with start_redis() as server:
        yield server


@pytest.fixture(scope="module")
def redis_tls(pki: Path) -> Iterator[Server]:
    with start_redis_tls(pki) as server:
        yield server


@pytest.fixture(scope="module")
def redis_mtls(pki: Path) -> Iterator[Server]:
    with start_redis_tls(pki, auth_clients=True) as server:
        yield server


def host(auth_server: oidc_as.AuthServer, **extra: str) -> ExternalAuth2Protocol:
    """One API host: its own in-process cache, the shared tier as configured."""
    return ExternalAuth2Protocol(echo_app, {**introspection_options(auth_server, "svc-post"), **extra})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def introspections(auth_server: oidc_as.AuthServer) -> int:
    return auth_server.stats()["introspection"].get("svc-post", 0)


@pytest.mark.parametrize("strategy", ["None", "MAC", "ENCRYPT", "encrypt", "mac"])
def test_hosts_share_answers_through_memcached(
    auth_server: oidc_as.AuthServer, memcached: Server, strategy: str
) -> None:
    opts = {
        "memcached_servers": f"127.0.0.1:{memcached.port}",
        "memcache_security_strategy": strategy,
        "memcache_secret_key": "fleet-secret-1",
    }
    a, b = host(auth_server, **opts), host(auth_server, **opts)
    token = oidc_as.obtain_token(auth_server, "svc-basic")
    before = introspections(auth_server)
    keys_before = set(memcached_keys(memcached.port))
    assert call(a, {"Authorization": f"Bearer {token}"})[0] == "200 OK"
    status, _, body = call(b, {"Authorization": f"Bearer {token}"})
    assert status == "200 OK" and body["environ"]["HTTP_X_USER_ID"] == "svc-basic"
    assert introspections(auth_server) == before + 1, "host B used host A's answer"
    assert b.authenticator.metrics()["shared_hits"] == 1
    keys = [k for k in memcached_keys(memcached.port) if k.startswith("tokenward/v1/") and k not in keys_before]
    assert keys and all(token not in k for k in keys)
    stored = [memcached_get(memcached.port, k) for k in keys]
    readable = any(v is not None and b"svc-basic" in v for v in stored)
    # ENCRYPT is honoured in any case (the reference only MACs a lower-case "encrypt").
    assert readable == (strategy.upper() != "ENCRYPT")
    for v in stored:
        assert v is None or token.encode() not in v


def test_forged_entries_are_refused_and_rollover_reads_the_old_secret(
    auth_server: oidc_as.AuthServer, memcached: Server
) -> None:
    server = f"127.0.0.1:{memcached.port}"
    old = host(
        auth_server, memcached_servers=server, memcache_security_strategy="ENCRYPT", memcache_secret_key="old-secret"
    )
    token = oidc_as.obtain_token(auth_server, "svc-admin")
    assert call(old, {"Authorization": f"Bearer {token}"})[0] == "200 OK"
    before = introspections(auth_server)
    wrong = host(
        auth_server,
        memcached_servers=server,
        memcache_security_strategy="ENCRYPT",
        memcache_secret_key="another-secret",
    )
    assert call(wrong, {"Authorization": f"Bearer {token}"})[0] == "200 OK"
    assert introspections(auth_server) == before + 1, "an entry under another secret is not used"
    rolled = host(
        auth_server,
        memcached_servers=server,
        memcache_security_strategy="ENCRYPT",
        memcache_secret_key="new-secret",
        memcache_secret_key_fallback="old-secret",
    )
    assert call(rolled, {"Authorization": f"Bearer {token}"})[0] == "200 OK"
    assert rolled.authenticator.metrics()["shared_hits"] == 1


@pytest.mark.parametrize("strategy", ["None", "MAC", "ENCRYPT"])
def test_hosts_share_answers_through_redis(auth_server: oidc_as.AuthServer, redis: Server, strategy: str) -> None:
    opts = {
        "redis_url": f"redis://127.0.0.1:{redis.port}/0",
        "memcache_security_strategy": strategy,
        "memcache_secret_key": "fleet-secret-2",
    }
    a, b = host(auth_server, **opts), host(auth_server, **opts)
    token = oidc_as.obtain_token(auth_server, "svc-array")
    before = introspections(auth_server)
    keys_before = set(redis_keys(redis.port))
    assert call(a, {"Authorization": f"Bearer {token}"})[0] == "200 OK"
    assert call(b, {"Authorization": f"Bearer {token}"})[0] == "200 OK"
    assert introspections(auth_server) == before + 1
    keys = [k for k in redis_keys(redis.port) if k.startswith("tokenward/v1/") and k not in keys_before]
    assert keys
    ttl = int(redis_cli(redis.port, "TTL", keys[0]).strip())
    assert 0 < ttl <= 300
    values = [redis_cli(redis.port, "GET", k) for k in keys]
    assert any(b"svc-array" in v for v in values) == (strategy != "ENCRYPT")


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_hosts_share_answers_through_redis_over_tls(
    auth_server: oidc_as.AuthServer, redis_tls: Server, pki: Path, name: str
) -> None:
    opts = {
        "redis_url": f"rediss://{name}:{redis_tls.port}/0",
        "redis_cafile": str(pki / "ca.pem"),
        "memcache_security_strategy": "MAC",
        "memcache_secret_key": "fleet-secret-4",
    }
    a, b = host(auth_server, **opts), host(auth_server, **opts)
    token = oidc_as.obtain_token(auth_server, "svc-basic")
    before = introspections(auth_server)
    keys_before = set(redis_keys(redis_tls.plain_port))
    assert call(a, bearer(token))[0] == "200 OK"
    assert call(b, bearer(token))[0] == "200 OK"
    assert introspections(auth_server) == before + 1, "host B used host A's answer, over TLS"
    assert b.authenticator.metrics()["shared_hits"] == 1
    for app in (a, b):
        assert app.authenticator.metrics()["shared_errors"] == 0
    assert [k for k in redis_keys(redis_tls.plain_port) if k.startswith("tokenward/v1/") and k not in keys_before]


def test_redis_mutual_tls_and_what_is_not_trusted(
    auth_server: oidc_as.AuthServer, redis_mtls: Server, pki: Path
) -> None:
    url = f"rediss://localhost:{redis_mtls.port}/0"
    trusted = {"redis_url": url, "redis_cafile": str(pki / "ca.pem")}
    token = oidc_as.obtain_token(auth_server, "svc-post")
    writer = host(
        auth_server, **trusted, redis_certfile=str(pki / "client-a.pem"), redis_keyfile=str(pki / "client-a.key")
    )
    assert call(writer, bearer(token))[0] == "200 OK"
    reader = host(auth_server, **trusted, redis_certfile=str(pki / "client-a-combined.pem"))
    assert call(reader, bearer(token))[0] == "200 OK"
    assert reader.authenticator.metrics()["shared_hits"] == 1, "a certfile holding the key works too"
    assert writer.authenticator.metrics()["shared_errors"] == 0
    # Without a client certificate the server refuses us; with the system roots we refuse the
    # server (the test CA is not among them). Both are a miss, never an error for the user.
    for opts in (trusted, {"redis_url": url, "redis_certfile": str(pki / "client-a-combined.pem")}):
        app = host(auth_server, **opts)
        started = time.monotonic()
        status, _, body = call(app, bearer(token))
        assert status == "200 OK", body
        assert time.monotonic() - started < 5
        metrics = app.authenticator.metrics()
        assert (metrics["shared_hits"], metrics["introspections"]) == (0, 1), opts
        assert metrics["shared_errors"] >= 1, opts


def test_hosts_share_answers_through_a_redis_cluster(auth_server: oidc_as.AuthServer) -> None:
    """Three real redis-server masters in one cluster: entries land on the master of their
    slot, so on every node; a second host finds each one; a node killed degrades to
    introspection without an error or a wait."""
    timeout = 1
    with Cluster() as cluster:
        opts = {
            # Two seeds: the third master is found from the slot map.
            "redis_cluster_nodes": f"127.0.0.1:{cluster.ports[0]},redis://127.0.0.1:{cluster.ports[1]}",
            "memcache_security_strategy": "ENCRYPT",
            "memcache_secret_key": "fleet-secret-5",
            "memcache_pool_socket_timeout": str(timeout),
        }
        a, b = host(auth_server, **opts), host(auth_server, **opts)
        tokens = [oidc_as.obtain_token(auth_server, "svc-post") for _ in range(30)]
        for token in tokens:
            assert call(a, bearer(token))[0] == "200 OK"
        asked = introspections(auth_server)
        for token in tokens:
            assert call(b, bearer(token))[0] == "200 OK"
        assert introspections(auth_server) == asked, "host B found every answer of host A's"
        assert b.authenticator.metrics()["shared_hits"] == len(tokens)
        for app in (a, b):
            assert app.authenticator.metrics()["shared_errors"] == 0
        per_node = [[k for k in redis_keys(port) if k.startswith("tokenward/v1/")] for port in cluster.ports]
        assert sum(map(len, per_node)) == len(tokens)
        assert all(per_node), f"entries on every master: {list(map(len, per_node))}"
        for port, keys in zip(cluster.ports, per_node):
            assert 0 < int(redis_cli(port, "PTTL", keys[0]).strip()) <= 300_000

        cluster.nodes[2].kill()
        c = host(auth_server, **opts)
        for token in tokens:
            started = time.monotonic()
            status, _, body = call(c, bearer(token))
            assert status == "200 OK", body
            assert time.monotonic() - started < 2 * timeout
        assert c.authenticator.metrics()["shared_errors"] >= 1


def test_redis_start_up_errors_name_the_option(auth_server: oidc_as.AuthServer, pki: Path) -> None:
    tls = "rediss://localhost:1/0"
    cases = [
        ({"redis_url": tls, "redis_cafile": "/nonexistent/ca.pem"}, "redis_cafile", "cannot be read"),
        ({"redis_url": tls, "redis_cafile": str(pki / "client-a.key")}, "redis_cafile", "no CERTIFICATE"),
        ({"redis_url": tls, "redis_certfile": str(pki / "client-a.pem")}, "redis_certfile", "private key"),
        (
            {"redis_url": tls, "redis_certfile": str(pki / "client-a.pem"), "redis_keyfile": str(pki / "client-b.key")},
            "redis_keyfile",
            "TLS",
        ),
        ({"redis_url": tls, "redis_keyfile": str(pki / "client-a.key")}, "redis_certfile", "required"),
        ({"redis_url": "redis://localhost:1/0", "redis_cafile": str(pki / "ca.pem")}, "redis_cafile", "rediss://"),
        ({"redis_url": tls + "#insecure"}, "redis_url", "fragment"),
        ({"redis_url": tls, "redis_cluster_nodes": "127.0.0.1:1"}, "redis_cluster_nodes", "redis_url"),
        (
            {"memcached_servers": "127.0.0.1:1", "redis_cluster_nodes": "127.0.0.1:1"},
            "redis_cluster_nodes",
            "memcached",
        ),
        ({"redis_cluster_nodes": "127.0.0.1:1,rediss://127.0.0.1:2"}, "redis_cluster_nodes", "mixes"),
        ({"redis_cluster_nodes": "127.0.0.1"}, "redis_cluster_nodes", "host:port"),
        ({"redis_cluster_nodes": "127.0.0.1:1", "redis_cafile": str(pki / "ca.pem")}, "redis_cafile", "rediss://"),
        (
            {"redis_cluster_nodes": "rediss://127.0.0.1:1", "redis_cafile": str(pki / "client-a.key")},
            "redis_cafile",
            "no CERTIFICATE",
        ),
    ]
    for change, option, words in cases:
        with pytest.raises(ConfigurationError) as err:
            host(auth_server, **change)
        assert err.value.option == option, (change, str(err.value))
        assert words in str(err.value), str(err.value)


def test_inactive_answers_are_shared_too(auth_server: oidc_as.AuthServer, memcached: Server) -> None:
    opts = {
        "memcached_servers": f"127.0.0.1:{memcached.port}",
        "memcache_security_strategy": "MAC",
        "memcache_secret_key": "s",
    }
    a, b = host(auth_server, **opts), host(auth_server, **opts)
    before = introspections(auth_server)
    assert call(a, {"Authorization": "Bearer junk-token-shared"})[0] == "401 Unauthorized"
    assert call(b, {"Authorization": "Bearer junk-token-shared"})[0] == "401 Unauthorized"
    assert introspections(auth_server) == before + 1


def silent_server() -> tuple[int, threading.Event]:
    """Accepts connections and never answers: a hung cache server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    held: list[Any] = []

    def run() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], stop


def test_cache_server_down_or_hung_degrades_to_introspection(auth_server: oidc_as.AuthServer) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    hung_port, stop = silent_server()
    try:
        for opts in (
            {"memcached_servers": f"127.0.0.1:{dead_port}"},
            {"redis_url": f"redis://127.0.0.1:{dead_port}/0"},
            {"memcached_servers": f"127.0.0.1:{hung_port}", "memcache_pool_socket_timeout": "1"},
            {"redis_url": f"redis://127.0.0.1:{hung_port}/0", "memcache_pool_socket_timeout": "1"},
            {"redis_url": f"rediss://127.0.0.1:{dead_port}/0"},
            {"redis_url": f"rediss://127.0.0.1:{hung_port}/0", "memcache_pool_socket_timeout": "1"},
            {"redis_cluster_nodes": f"127.0.0.1:{dead_port}"},
            {"redis_cluster_nodes": f"127.0.0.1:{hung_port}", "memcache_pool_socket_timeout": "1"},
        ):
            app = host(auth_server, **opts)
            for client in ("svc-post", "svc-basic"):
                token = oidc_as.obtain_token(auth_server, client)
                started = time.monotonic()
                status, _, body = call(app, {"Authorization": f"Bearer {token}"})
                assert status == "200 OK", (opts, body)
                assert time.monotonic() - started < 5, opts
            metrics = app.authenticator.metrics()
            assert metrics["shared_errors"] >= 1, opts
            assert metrics["introspections"] == 2, "the dead server is left alone after its first failure"
    finally:
        stop.set()


def stored_on(app: ExternalAuth2Protocol, tokens: list[str], servers: list[Server]) -> list[int]:
    """Calls ``app`` once with each token (a miss everywhere) and tells, per token, which of
    ``servers`` stored its answer (by memcached's set counter)."""
    owners = []
    for token in tokens:
        before = [memcached_stats(s.port)["cmd_set"] for s in servers]
        assert call(app, bearer(token))[0] == "200 OK"
        stored = [memcached_stats(s.port)["cmd_set"] - n for s, n in zip(servers, before)]
        assert sorted(stored) == [0] * (len(servers) - 1) + [1], stored
        owners.append(stored.index(1))
    return owners


def test_two_memcached_servers_one_killed_then_back(auth_server: oidc_as.AuthServer) -> None:
    """Rendezvous hashing over two real memcached: each owns a share; when one is killed its
    share degrades to introspection (no error, no wait) and moves to the other, whose own keys
    keep being served from it; after memcache_pool_dead_retry the restarted server is used
    again."""
    timeout, dead_retry = 1, 5
    with start_memcached() as a, start_memcached() as b:
        opts = {
            "memcached_servers": f"127.0.0.1:{a.port},127.0.0.1:{b.port}",
            "memcache_security_strategy": "MAC",
            "memcache_secret_key": "fleet-secret-3",
            "memcache_pool_socket_timeout": str(timeout),
            "memcache_pool_dead_retry": str(dead_retry),
        }
        tokens = [oidc_as.obtain_token(auth_server, "svc-post") for _ in range(24)]
        while_dead = [oidc_as.obtain_token(auth_server, "svc-post") for _ in range(8)]
        once_back = [oidc_as.obtain_token(auth_server, "svc-post") for _ in range(24)]
        owner = stored_on(host(auth_server, **opts), tokens, [a, b])
        on_a = [t for t, o in zip(tokens, owner) if o == 0]
        on_b = [t for t, o in zip(tokens, owner) if o == 1]
        assert on_a and on_b, "each server owns a share"
        a_keys = set(memcached_keys(a.port))

        # Another host, with pooled connections to both servers; then b crashes.
        reader = host(auth_server, **opts)
        for token in (on_a[0], on_b[0]):
            assert call(reader, bearer(token))[0] == "200 OK"
        assert reader.authenticator.metrics()["shared_hits"] == 2
        b.kill()
        failed_at = time.monotonic()
        a_hits, asked = memcached_stats(a.port)["get_hits"], introspections(auth_server)
        for token in on_b[1:] + on_a[1:]:
            started = time.monotonic()
            status, _, body = call(reader, bearer(token))
            assert status == "200 OK", body
            assert time.monotonic() - started < timeout, "no wait on the dead server"
        metrics = reader.authenticator.metrics()
        assert memcached_stats(a.port)["get_hits"] - a_hits == len(on_a) - 1, "a's keys served from a"
        assert metrics["shared_hits"] == 2 + len(on_a) - 1
        assert introspections(auth_server) - asked == len(on_b) - 1, "b's share degrades to introspection"
        assert metrics["shared_errors"] >= 1
        # Only b's share moved: a kept every key it had, and gained one per token of b's.
        after = set(memcached_keys(a.port))
        assert a_keys <= after and len(after - a_keys) == len(on_b) - 1
        # A third host finds b's share on a now.
        third = host(auth_server, **opts)
        asked = introspections(auth_server)
        for token in on_b[1:]:
            assert call(third, bearer(token))[0] == "200 OK"
        assert introspections(auth_server) == asked

        with start_memcached(b.port) as b_back:
            # b is back on its port, but the reader leaves it alone until dead_retry passes...
            assert stored_on(reader, while_dead, [a, b_back]) == [0] * len(while_dead)
            assert time.monotonic() - failed_at < dead_retry, "too slow to see b left alone"
            # ...and then uses it again for the keys it owns.
            time.sleep(max(0.0, dead_retry + 0.2 - (time.monotonic() - failed_at)))
            again = stored_on(reader, once_back, [a, b_back])
            assert 0 in again and 1 in again, "the restarted server owns its share again"


def test_keystonemiddleware_and_tokenward_share_one_memcached(
    auth_server: oidc_as.AuthServer, memcached: Server
) -> None:
    pytest.importorskip("keystonemiddleware")
    from keystonemiddleware import external_oauth2_token as ksm

    opts = {**introspection_options(auth_server, "svc-post"), "memcached_servers": f"127.0.0.1:{memcached.port}"}
    token = oidc_as.obtain_token(auth_server, "svc-post")
    reference = ksm.filter_factory({}, **opts)(echo_app)
    ours = ExternalAuth2Protocol(echo_app, opts)
    for app in (reference, ours, reference, ours):
        assert call(app, {"Authorization": f"Bearer {token}"})[0] == "200 OK"
    keys = memcached_keys(memcached.port)
    assert any(k.startswith("tokens/") for k in keys), "the reference's entry"
    assert any(k.startswith("tokenward/v1/") for k in keys), "ours, apart"
