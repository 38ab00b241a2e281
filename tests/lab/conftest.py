"""Fixtures for tests against the real miniupnpd gateway in network namespaces.

- ``lab`` (session): one :class:`~tests.lab.netlab.Lab` for the whole run, destroyed at the end.
  If it cannot be built the test is skipped -- unless ``CI=true``, where that is a failure
  (CI must never silently run without the lab).
- ``_clean_lab`` (autouse, function): before every test that uses ``lab``, puts the gateway back
  to its just-built state (``Lab.reset``: restarts miniupnpd only if the last test left rules,
  loss, a changed WAN address or a dead daemon behind -- a clean lab costs ~15 ms).
- ``fresh_lab`` (function): like ``lab`` but with miniupnpd always restarted first, for tests
  that need a young epoch (~0 s) or a gateway with no history at all.

Every test collected under tests/lab gets the ``lab`` marker, so ``-m "not lab"`` skips them.
A failing lab test gets the miniupnpd output it caused attached to its report.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from .netlab import Lab, LabError, ensure_lab_dependencies

_LAB_DIR = Path(__file__).resolve().parent
_LOG_OFFSET = pytest.StashKey[int]()
_LAB_OF_ITEM = pytest.StashKey[Lab]()


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI (where a missing lab means the lab tests never ran)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"lab unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"lab unavailable: {reason}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this directory ``lab`` (conftest hooks see the whole session)."""
    for item in items:
        if _LAB_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.lab)


def built_lab(*, ipv6: bool = False) -> Iterator[Lab]:
    """A lab made (and destroyed when the generator is closed), or the test skipped saying
    why it cannot be made here."""
    reason = ensure_lab_dependencies()
    if reason is not None:
        _unavailable(reason)
    try:
        built = Lab.create(ipv6=ipv6)
    except LabError as exc:
        _unavailable(str(exc))
    try:
        yield built
    finally:
        built.destroy()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The session's lab: miniupnpd at 198.18.0.1, client 198.18.0.2, WAN 11.0.0.1."""
    yield from built_lab()


@pytest.fixture(autouse=True)
def _clean_lab(request: pytest.FixtureRequest) -> None:
    """Reset the shared lab before each test that uses it, so tests are independent."""
    if "lab" not in request.fixturenames:
        return
    shared: Lab = request.getfixturevalue("lab")
    shared.reset()
    request.node.stash[_LOG_OFFSET] = shared.gateway_log_size()
    request.node.stash[_LAB_OF_ITEM] = shared


@pytest.fixture
def fresh_lab(lab: Lab) -> Lab:
    """The shared lab with miniupnpd just restarted: empty state, epoch ~0."""
    lab.reset(restart=True)
    return lab


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach this test's miniupnpd output to a failure report (the first thing to read)."""
    report: pytest.TestReport = yield
    shared = item.stash.get(_LAB_OF_ITEM, None)
    if report.failed and shared is not None and not shared.destroyed:
        output = shared.gateway_log(since=item.stash.get(_LOG_OFFSET, 0))
        lines = output.splitlines()[-200:]
        report.sections.append(("miniupnpd log", "\n".join(lines)))
    return report
