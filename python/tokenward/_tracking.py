"""The live filters and token clients of this process, for ``tokenward.metrics`` (held
weakly, so tracking keeps nothing alive; no dependency, so the filter can always track)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

_sources: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def track(source: Any) -> None:
    """Remembers a source with ``metrics_label`` and ``metric_samples()``."""
    with _lock:
        _sources[id(source)] = source


def sources() -> list[Any]:
    """The sources alive now."""
    with _lock:
        return list(_sources.values())
