"""Fixtures shared by tests/python and tests/support.

``keystone``: one real, seeded Keystone for the whole test run (tests/support/keystone_server.py),
started the first time a test asks for it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import keystone_server  # noqa: E402


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keystone_server.KeystoneServer]:
    pki = keystone_server.ensure_pki(ROOT / "tests" / ".work" / "pki")
    yield from keystone_server.keystone_session(pki, tmp_path_factory.mktemp("keystone"))
