"""Prometheus metrics of every tokenward filter and token client in this process.

    from tokenward import metrics
    metrics.register()            # into prometheus_client.REGISTRY, once per process

Each source is labelled ``filter`` (the ``metrics_name`` option, else the filter's
``log_name`` / logger name, else ``client:<client_id>`` for a token client) and ``pid``.
Under a pre-fork server every worker has its own numbers: prometheus_client's multiprocess
mode does not aggregate custom collectors, so expose each worker (say, one ``/metrics``
route served by the worker that answers, scraped often enough, or a per-worker port) and sum
by ``filter`` in PromQL, keeping ``pid`` apart. Needs ``prometheus_client`` (the ``metrics``
extra).
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Iterator

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from . import _native, _tracking

__all__ = ["TokenwardCollector", "register"]

_lock = threading.Lock()


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


class TokenwardCollector(Collector):
    """Collects the samples of every live tokenward filter and token client."""

    def collect(self) -> Iterator[Metric]:
        sources = _tracking.sources()
        pid = str(os.getpid())
        families: dict[str, Metric] = {}
        for name, kind, help_text in _native.metric_families():
            labels = ["filter", "pid"] + (["kind"] if name == "tokenward_as_errors_total" else [])
            if kind == "counter":
                families[name] = CounterMetricFamily(name, help_text, labels=labels)
            elif kind == "gauge":
                families[name] = GaugeMetricFamily(name, help_text, labels=labels)
            else:
                families[name] = HistogramMetricFamily(name, help_text, labels=labels)
        for source in sorted(sources, key=lambda s: s.metrics_label):
            base = [source.metrics_label, pid]
            for family, _label, label_value, value in source.metric_samples():
                metric = families[family]
                values = base + ([label_value] if label_value is not None else [])
                if isinstance(metric, HistogramMetricFamily):
                    buckets, total, _count = value
                    metric.add_metric(values, [(_le(le), n) for le, n in buckets], total)
                else:
                    metric.add_metric(values, value)
        for metric in families.values():
            if metric.samples:
                yield metric

    def describe(self) -> Iterator[Metric]:
        return iter(())


#: The registries given a collector, and that collector. Weak: a registry that is gone may
#: leave its id to a new one, which must still get a collector of its own.
_registered: weakref.WeakKeyDictionary[CollectorRegistry, TokenwardCollector] = weakref.WeakKeyDictionary()


def register(registry: CollectorRegistry = REGISTRY) -> TokenwardCollector:
    """Registers one collector with ``registry`` and returns it (again for the same
    registry: the collector registered the first time)."""
    with _lock:
        collector = _registered.get(registry)
        if collector is None:
            collector = TokenwardCollector()
            registry.register(collector)
            _registered[registry] = collector
    return collector
