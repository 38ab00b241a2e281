"""Bad arguments (exit 2, nothing sent), silence (exit 3), no gateway (exit 4), a damaged
state file (a warning, never fatal), the TUI hand-off, --help."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from engine.statefile import StateFile
from tui import cli

from .conftest import Sim


@pytest.mark.parametrize("argv", [
    ["map", "tcp", "70000"],
    ["map", "tcp", "-1"],
    ["map", "tcp", "eighty"],
    ["map", "bogus-protocol", "80"],
    ["map", "300", "80"],
    ["map", "tcp"],
    ["map", "tcp", "80", "--lifetime", "0"],
    ["map", "tcp", "80", "--lifetime", "4294967296"],
    ["map", "tcp", "80", "--external-port", "65536"],
    ["map", "tcp", "80", "--timeout", "-1"],
    ["map", "tcp", "80", "--timeout", "nan"],
    ["map", "tcp", "80", "--via", "igd"],
    ["map", "tcp", "0", "--via", "natpmp"],
    ["map", "tcp", "0"],
    ["map", "all", "80"],
    ["map", "gre", "0", "--via", "natpmp"],
    ["map", "tcp", "80", "--no-listen"],
    ["map", "tcp", "80", "--listen-port", "6000"],
    ["map", "tcp", "80", "--demo"],
    ["map", "tcp", "80", "--local", "::1"],
    ["map", "tcp", "80", "--local", "not-an-address"],
    ["map", "tcp", "80", "--gateway-port", "0"],
    ["unmap", "tcp"],
    ["unmap", "tcp", "80", "--all"],
    ["unmap", "gre", "--all"],
    ["unmap", "udp", "--all", "--via", "pcp"],
    ["unmap", "udp", "--all", "--external-port", "5"],
    ["probe", "--listen-port", "6000"],
    ["probe", "extra"],
    ["watch", "--count", "0"],
    ["watch", "--listen-port", "0"],
    ["watch", "--via", "upnp"],
    ["unmap", "udp", "--all", "--gateway", "::1"],
    ["map", "tcp", "80", "--via", "upnp", "--gateway", "::1"],
    ["frobnicate"],
])
async def test_bad_arguments_exit_2_before_sending(sim: Sim, run: Any, argv: list[str],
                                                   state_dir: Path) -> None:
    # The simulated gateway's flags first: a bad --gateway-port given later wins.
    result = await run(*argv[:1], *sim.target, *argv[1:])
    assert result.code == 2, (result.out, result.err)
    [line] = result.err_lines  # one line, not argparse's usage block (issue 17)
    assert line.startswith("natdeck")
    assert ": error: " in line
    assert line.endswith("--help')")
    assert result.out == ""
    assert sim.gateway.counters.received == 0
    assert not state_dir.exists()


@pytest.mark.parametrize(("argv", "said"), [
    (["watch", "--via", "upnp"], "UPnP IGD sends no announcements"),
    (["unmap", "udp", "--all", "--gateway", "::1"],
     "unmap --all is NAT-PMP's delete-all, which speaks only IPv4"),
    (["unmap", "tcp", "--all", "--gateway", "::1", "--via", "natpmp"],
     "NAT-PMP speaks only IPv4"),
    (["map", "tcp", "80", "--via", "upnp", "--gateway", "::1"],
     "UPnP IGD maps ports only for IPv4 hosts"),
    (["unmap", "tcp", "80", "--via", "upnp", "--gateway", "::1"],
     "UPnP IGD maps ports only for IPv4 hosts"),
])
async def test_what_the_gateway_cannot_do_is_refused_before_sending(
        sim: Sim, run: Any, argv: list[str], said: str) -> None:
    # (The gateway named last wins: ::1, where nothing listens; nothing is sent anyway.)
    result = await run(*argv[:1], *sim.target, *argv[1:])
    assert result.code == 2, (result.out, result.err)
    [line] = result.err_lines
    assert said in line
    assert "Traceback" not in result.err


async def test_bad_gateway_address(run: Any) -> None:
    result = await run("probe", "--gateway", "192.0.2.300")
    assert result.code == 2
    assert "not an IPv4 or IPv6 address" in result.err


async def test_usage_error_names_the_subcommand(sim: Sim, run: Any) -> None:
    result = await run("unmap", "udp", "--all", "--via", "pcp", *sim.target)
    assert result.err_lines == ["natdeck unmap: error: unmap --all is NAT-PMP's delete-all; "
                                "PCP has none (see 'natdeck unmap --help')"]


@pytest.mark.parametrize(("argv", "line"), [
    (["map", "tcp", "70000"],
     "natdeck map: error: argument PORT: port must be 0-65535, not 70000"),
    (["map", "bogus-protocol", "80"],
     "natdeck map: error: argument PROTO: "),
    (["map", "tcp", "80", "--lifetime", "0"],
     "natdeck map: error: argument --lifetime: lifetime must be 1-4294967295 seconds, not 0"),
    (["probe", "--gateway", "192.0.2.300"],
     "natdeck probe: error: argument --gateway: not an IPv4 or IPv6 address: '192.0.2.300'"),
    (["map", "tcp", "80", "--gateway", "127.0.0.1", "--bogus"],
     "natdeck map: error: unrecognized arguments: --bogus"),
    (["--bogus"], "natdeck: error: unrecognized arguments: --bogus"),
    (["frobnicate"], "natdeck: error: argument COMMAND: invalid choice: 'frobnicate'"),
])
async def test_a_bad_value_is_one_line_with_a_help_hint(run: Any, argv: list[str],
                                                        line: str) -> None:
    result = await run(*argv)
    assert result.code == 2
    assert result.out == ""
    [said] = result.err_lines  # not argparse's 5-6 line usage block first (issue 17)
    assert said.startswith(line), said
    command = "natdeck map" if argv[0] == "map" else \
        "natdeck probe" if argv[0] == "probe" else "natdeck"
    assert said.endswith(f"(see '{command} --help')")


async def test_options_before_the_subcommand(sim: Sim, run: Any) -> None:
    result = await run(*sim.target, "probe", "--json")
    assert result.code == 0, result.err
    assert result.objects[0]["gateway_port"] == sim.port


@pytest.mark.parametrize("argv", [
    ["map", "tcp", "8080", "--via", "pcp"],
    ["map", "tcp", "8080"],  # auto: PCP silence, then NAT-PMP, within the one timeout
    ["unmap", "tcp", "8080", "--via", "natpmp"],
    ["unmap", "udp", "--all"],
])
async def test_silent_gateway_is_exit_3(make_sim: Any, run: Any, argv: list[str]) -> None:
    sim = await make_sim(silent=True)
    result = await run(*argv, "--timeout", "0.5", *sim.target)
    assert result.code == 3
    assert result.out == ""
    [line] = result.err_lines
    assert line.startswith("natdeck: ")
    assert "no answer" in line
    assert sim.gateway.counters.received >= 1


async def test_no_gateway_is_exit_4(run: Any) -> None:
    # Discovery is replaced in these tests by one that finds nothing (see conftest).
    result = await run("probe")
    assert result.code == 4
    assert result.err_lines == ["natdeck: tests never discover the real gateway; pass --gateway"]


# -- a damaged state file --------------------------------------------------------------------


@pytest.mark.parametrize(("content", "warning"), [
    ("{corrupt", "not valid JSON"),
    (json.dumps({"version": 7, "mappings": []}), "format version 7"),
])
async def test_damaged_state_file_warns_and_carries_on(sim: Sim, run: Any, state_dir: Path,
                                                       content: str, warning: str) -> None:
    state_dir.mkdir()
    (state_dir / "mappings.json").write_text(content)
    result = await run("map", "tcp", "8080", *sim.target)
    assert result.code == 0
    assert result.out.startswith("mapped tcp 8080")
    assert result.err_lines
    assert all(line.startswith("natdeck: warning: ")
                                    for line in result.err_lines)
    assert warning in result.err
    # The damaged file was kept aside; the new one holds the mapping.
    assert len(list(state_dir.glob("mappings.json.bad-*"))) == 1
    assert StateFile(state_dir).find("127.0.0.1", sim.port, 6, 8080)[0] is not None
    again = await run("unmap", "tcp", "8080", *sim.target)
    assert again.code == 0
    assert again.err == ""
    assert sim.mapped() == {}


async def test_missing_state_file_is_silent(sim: Sim, run: Any, state_dir: Path) -> None:
    result = await run("unmap", "tcp", "8080", *sim.target)
    assert result.code == 0
    assert result.err == ""


async def test_unwritable_state_dir_fails_and_deletes_the_mapping(
        sim: Sim, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before, exit 0 with a warning, and a PCP mapping nobody could delete (its nonce lost).
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("NATDECK_STATE_DIR", str(blocker / "state"))
    result = await run("map", "tcp", "8080", *sim.target)
    assert result.code == 1
    assert result.out == ""
    [line] = result.err_lines
    assert line.startswith("natdeck: could not write the state file")
    assert "tcp 8080 was deleted again" in line
    assert sim.mapped() == {}


# -- the TUI hand-off and help ---------------------------------------------------------------


def test_no_subcommand_runs_the_tui(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def run_app(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 5

    fake = types.ModuleType("tui.launch")
    fake.run_app = run_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tui.launch", fake)
    code = cli.main(["--gateway", "127.0.0.1", "--gateway-port", "15351", "--local", "127.0.0.2",
                     "--demo", "--map", "tcp:8080", "--map", "udp:5000", "--map", "gre:0",
                     "--keep", "--via", "pcp", "--ssdp-port", "11900"])
    assert code == 5
    assert calls == [dict(gateway="127.0.0.1", local="127.0.0.2", gateway_port=15351, demo=True,
                          maps=[(6, 8080), (17, 5000), (47, 0)], keep=True, via="pcp",
                          ssdp_port=11900)]
    calls.clear()
    assert cli.main([]) == 5
    assert calls == [dict(gateway=None, local=None, gateway_port=5351, demo=False, maps=[],
                          keep=False, via="auto", ssdp_port=1900)]


@pytest.mark.parametrize("spec", ["tcp", "tcp:", "tcp:99999", "nope:80", ":80", "all:80"])
def test_bad_tui_map_spec(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--map", spec]) == 2
    assert "--map" in capsys.readouterr().err


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for code in cli.EXIT_CODES:
        assert f"  {code} " in text
    for command in ("map", "unmap", "probe", "watch"):
        assert command in text
    assert cli.main(["map", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--gateway", "--gateway-port", "--local", "--via", "--timeout", "--json",
                 "--external-port", "--lifetime", "--hold", "--listen-host", "--listen-port"):
        assert flag in text
