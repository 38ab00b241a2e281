"""The goal rows ``make bench`` prints (issue 15): measured, target, met."""

from __future__ import annotations

import pytest

from tests.bench.report import TIMES, Goal, goal_table


def test_a_goal_is_met_at_or_under_its_target() -> None:
    assert Goal("ratio", 1.0, 1.0, "x").met is True
    assert Goal("ratio", 1.01, 1.0, "x").met is False
    assert Goal("retransmissions", 0, 0, "").met is True
    assert Goal("not measured", float("nan"), 1.0, "x").met is None


def test_goal_table_shows_each_goal_in_its_unit_with_the_peers() -> None:
    table = goal_table([
        Goal("fast gateway: natdeck concurrent over the floor", 1.234, 1.0, "x", "floor 250 ms"),
        Goal("import time", 0.0712, 0.060, "ms"),
        Goal("renewal CPU", 85e-6, 100e-6, "us"),
        Goal("retransmissions", 3, 0, ""),
    ]).splitlines()
    assert table[0] == "| goal | measured | target | met | in the same rounds |"
    assert table[2] == (f"| fast gateway: natdeck concurrent over the floor | 1.23{TIMES} | "
                        f"≤ 1.00{TIMES} | **no** | floor 250 ms |")
    assert table[3] == "| import time | 71 ms | ≤ 60 ms | **no** |  |"
    assert table[4] == "| renewal CPU | 85 µs | ≤ 100 µs | yes |  |"
    assert table[5] == "| retransmissions | 3 | ≤ 0 | **no** |  |"


def test_a_trace_says_when_the_gateway_waited_for_the_client() -> None:
    from tests.bench.lab_throughput import trace_gaps

    # Create: one out alone (idle 0.5 ms between), then two out at once; a phase mark; delete:
    # one retransmitted.
    trace = [(1.0, ">"), (1.002, "<"), (1.0025, ">"), (1.0026, ">"), (1.004, "<"), (1.006, "<"),
             (1.01, "|"), (1.011, ">"), (1.3, "R"), (1.3, ">"), (1.302, "<")]
    gaps = trace_gaps(trace)
    assert gaps["create idle"] == pytest.approx(0.0005)
    assert gaps["create busy"] == pytest.approx(0.0055)
    assert gaps["create most out"] == 2
    assert gaps["create answer gaps"] / gaps["create answers"] == pytest.approx(0.002)
    assert gaps["delete lead"] == pytest.approx(0.001)
    assert gaps["delete resent"] == 1
    assert gaps["delete most out"] == 2


def test_the_pcp_sequential_row_compares_each_client_over_its_own_protocols_floor() -> None:
    from tests.bench.lab_throughput import fast_goals

    # Two rounds. The gateway serves PCP 2 % slower than NAT-PMP; natdeck PCP adds 1 % to the
    # PCP floor, py-natpmp 2 % to the NAT-PMP floor: natdeck adds less, whatever PCP costs.
    def runs(*totals: float) -> list[dict[str, float]]:
        return [{"total": total} for total in totals]

    results = {"floor-natpmp": runs(100.0, 110.0), "floor-pcp": runs(102.0, 112.2),
               "natdeck-pcp-seq": runs(103.02, 113.322), "py-natpmp": runs(102.0, 112.2),
               "natdeck-natpmp-seq": runs(101.0, 111.1), "natdeck-natpmp-gather": runs(99, 109),
               "natdeck-pcp-gather": runs(101, 111)}
    goals = {goal.name.split(": ", 1)[1]: goal for goal in fast_goals(results)}
    pcp = next(goal for name, goal in goals.items() if name.startswith("natdeck sequential")
               and "its protocol's floor" in name)
    assert pcp.value == pytest.approx(1.01 / 1.02)
    assert pcp.met is True
    assert "rounds 0.990–0.990" in pcp.detail
    natpmp = next(goal for goal in fast_goals(results)
                  if goal.name.startswith("fast gateway, NAT-PMP: natdeck sequential"))
    assert natpmp.value == pytest.approx(101.0 / 102.0)


def test_the_traced_rows_compare_what_each_client_makes_the_gateway_wait() -> None:
    from tests.bench.lab_throughput import traced_goals

    def one_at_a_time(turnaround: float) -> dict[str, list[tuple[float, str]]]:
        # Two requests a phase, each answered after 3 ms; `turnaround` from answer to send.
        trace, at = [], 0.0
        for phase in range(2):
            for _ in range(2):
                trace += [(at, ">"), (at + 0.003, "<")]
                at += 0.003 + turnaround
            if not phase:
                trace.append((at, "|"))
        return {"trace": trace}

    concurrent = {"trace": [(0.0, ">"), (0.0, ">"), (0.003, "<"), (0.006, "<"), (0.006, "|"),
                            (0.006, ">"), (0.006, ">"), (0.009, "<"), (0.012, "<")]}
    results = {"floor-natpmp": [one_at_a_time(10e-6)], "floor-pcp": [one_at_a_time(20e-6)],
               "py-natpmp": [one_at_a_time(40e-6)],
               "asyncio-natpmp": [one_at_a_time(26e-6)],
               "natdeck-natpmp-seq": [one_at_a_time(80e-6)],
               "natdeck-pcp-seq": [one_at_a_time(30e-6)],
               "natdeck-natpmp-blocking": [one_at_a_time(40e-6)],
               "natdeck-natpmp-gather": [concurrent]}
    goals = {goal.name: goal for goal in traced_goals(results)}
    waits = goals["fast gateway (traced), NAT-PMP: the gateway's wait for natdeck concurrent "
                  f"{TIMES} its wait for the sequential floor, a run"]
    # Never waited for natdeck; for the floor, a turnaround within each phase (the wait
    # before a phase's first request is its lead, not counted): 20 µs a run.
    assert waits.value == 0.0
    assert waits.met is True
    assert "floor 0.02 ms" in waits.detail
    seq = goals[f"fast gateway (traced), NAT-PMP: natdeck sequential turnaround {TIMES} "
                "py-natpmp's (NAT-PMP)"]
    assert seq.value == pytest.approx(2.0)
    assert seq.met is False
    # Beside it, what the event loop takes alone (per request sent: half a turnaround here,
    # one of two requests a phase follows an answer); the blocking rows, the bare blocking
    # client.
    assert "bare asyncio NAT-PMP 13 µs" in seq.detail
    pcp = goals[f"fast gateway (traced), PCP: natdeck sequential turnaround {TIMES} "
                "py-natpmp's (NAT-PMP)"]
    assert pcp.value == pytest.approx(0.75)
    blocking = goals[f"fast gateway (traced), NAT-PMP: natdeck `BlockingClient` turnaround "
                     f"{TIMES} py-natpmp's (NAT-PMP)"]
    assert blocking.value == pytest.approx(1.0)
    assert blocking.met is True
    assert "bare blocking NAT-PMP 5 µs" in blocking.detail
    untraced = goals[f"fast gateway (traced), PCP: the gateway's wait for natdeck concurrent "
                     f"{TIMES} its wait for the sequential floor, a run"]
    assert untraced.met is None  # natdeck PCP concurrent was not in these rounds


def test_a_turnaround_is_cut_into_its_steps_only_when_every_mark_came_in_order() -> None:
    from tests.bench.turnaround_steps import steps

    # One whole turnaround (1 µs a step), then one whose request went out with no caller's
    # call between (the NAT-PMP address request before the first map): left out.
    whole = [("<", 0.0), ("a", 1e-6), ("m", 2e-6), ("u", 3e-6), ("c", 4e-6), ("e", 5e-6),
             ("k", 6e-6), (">", 8e-6)]
    other = [("<", 1.0), ("a", 1.1), ("m", 1.2), ("e", 1.3), ("k", 1.4), (">", 1.5)]
    found = steps([("c", -1.0), ("e", -1.0), ("k", -1.0), (">", -1.0), *whole, *other])
    assert found["total"] == [pytest.approx(8e-6)]
    assert found["decode and check"] == [pytest.approx(1e-6)]
    assert found["socket send call"] == [pytest.approx(2e-6)]
    assert all(len(times) == 1 for times in found.values())
