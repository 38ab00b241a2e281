"""Tests against a real NAT-PMP/PCP gateway (miniupnpd) in Linux network namespaces.

:mod:`netlab` builds the lab (plain Python, reusable by benchmarks); ``conftest`` wraps it in
pytest fixtures.
"""
