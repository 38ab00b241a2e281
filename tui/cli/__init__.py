"""``natdeck``: NAT-PMP (RFC 6886), PCP (RFC 6887) and UPnP IGD from the shell, for people and
scripts.

Usage::

    natdeck                                  open the TUI (--gateway, --local, --demo,
                                             --map tcp:8080 ..., --keep, --via)
    natdeck map PROTO PORT [--external-port N] [--lifetime S] [--hold]
    natdeck unmap PROTO PORT [--external-port N]
    natdeck unmap PROTO --all                NAT-PMP's delete-all of one protocol
    natdeck probe                            which protocols the gateway answers (PCP,
                                             NAT-PMP, UPnP IGD with its name and model)
    natdeck watch [--listen-host H] [--listen-port P] [--count N]
    natdeck list [--watch [--interval S]] [--ssdp-port N]   every mapping on the gateway

Every subcommand takes ``--gateway ADDR`` (else the default gateway is
discovered), ``--gateway-port N`` (5351), ``--ssdp-port N`` (1900: where the gateway's UPnP IGD
answers SSDP), ``--local ADDR``, ``--via auto|pcp|natpmp|upnp`` (auto: PCP, then
NAT-PMP, then UPnP IGD), ``--timeout S`` and ``--json`` (one JSON object per line and
per result, with stable field names). Errors are one line on stderr, usage errors
too (with a ``--help`` hint).

Exit status (:data:`tui.exit_codes.EXIT_CODES`, shared with the terminal UI):

====  =======================================================================
0     success (``map --hold`` and ``watch``: also when stopped by SIGINT/SIGTERM)
1     failure: the gateway refused (a result code), or another error
2     usage: bad arguments; nothing was sent
3     no answer: the gateway stayed silent until ``--timeout``
4     no gateway: none was found by discovery (pass ``--gateway``)
5     unconfirmed: ``unmap``'s delete was accepted, but whether the mapping is gone
      could not be checked
130   interrupted (SIGINT) in the middle of a one-shot command
====  =======================================================================

JSON output (``--json``), one object per line; fields are only ever added:

- ``map``: ``event`` ("mapped"; with ``--hold`` then "renewed", "recovered",
  "lost", "renewal_failed", "failed", "external_address_changed",
  "gateway_restarted", and "deleted" at the end), ``protocol`` (name),
  ``protocol_number``, ``internal_port``, ``external_address``,
  ``external_port``, ``lifetime`` (granted seconds), ``via`` ("pcp"/"natpmp"/"upnp"),
  ``gateway``, ``gateway_port``, ``local_address``, ``epoch`` (null for UPnP, which
  has none), ``permanent`` (a UPnP lease without end); events about
  trouble carry ``reason`` instead of the mapping's fields.
- ``unmap``: ``event`` ("deleted", "not_held", "unconfirmed" with exit 5 and a
  ``reason``, or "deleted_all" for ``--all``: see :mod:`tui.cli.cmd_unmap`),
  ``protocol``, ``protocol_number``, ``internal_port``, ``external_port``, ``via``,
  ``gateway``, ``gateway_port``, ``local_address``, ``stored_nonce``.
- ``probe``: ``gateway``, ``gateway_port``, ``local_address``, ``reachable``,
  ``pcp``, ``natpmp``, ``via``, ``external_address``, ``epoch``, ``pcp_epoch``,
  ``natpmp_epoch``, ``rtt`` (seconds), ``pcp_version``, ``upnp``, ``igd`` (null, or
  ``friendly_name``, ``manufacturer``, ``model_name``, ``model_number``,
  ``igd_version``, ``service_type``, ``location``), ``upnp_rtt``, ``warning`` (the
  IGD reports no public external address: double NAT).
- ``watch``: ``event`` ("announcement"), ``kind`` ("natpmp_address" or
  "pcp_announce"), ``protocol``, ``external_address``, ``previous_address``,
  ``address_changed``, ``restarted`` (the epoch shows the gateway lost its
  state), ``repeat``, ``epoch``, ``gateway``, ``gateway_port``, ``port`` (where it
  arrived), ``time`` (UTC, ISO 8601).
- ``list``: one object per mapping the gateway holds: ``protocol``, ``protocol_number``,
  ``external_port``, ``internal_client``, ``internal_port``, ``description``, ``lease``
  (seconds left, null when permanent), ``permanent``, ``enabled``, ``remote_host``,
  ``made_by`` ("upnp", "pcp", "natpmp"), ``this_host``, ``ours``; with ``--watch`` then
  one per change, the same fields plus ``event`` ("opened", "closed", "changed") and
  ``time`` (Unix seconds). No UPnP IGD answering is exit 3, a refusal to list exit 1.

PCP mappings belong to their nonce (RFC 6887 §11.1), so ``map`` keeps it in
the state file (:mod:`engine.statefile`) and ``unmap`` (another process) uses it;
running ``map`` again for the same mapping renews it with the same nonce. A UPnP
IGD mapping is named by its protocol and external port, which the record keeps
the same way (and whether its lease is permanent).

The package, one module per concern: :mod:`~tui.cli.args` (the parser and its checks),
:mod:`~tui.cli.validation` (the one request check), :mod:`~tui.cli.output` (text and
JSON), :mod:`~tui.cli.context` (a command's run and its state-file records),
:mod:`~tui.cli.runtime` (logging, signals, the loop), one ``cmd_*`` module per command,
:mod:`~tui.cli.hold` (``map --hold``), :mod:`~tui.cli.delete_check` (whether a NAT-PMP
delete took), :mod:`~tui.cli.delete_without_record` (``unmap`` of a mapping without a
record) and :mod:`~tui.cli.announcement_epochs` (``watch``'s reading of announcements).

Nothing here imports Textual; the TUI is imported only when ``natdeck`` runs without a
subcommand, and each command's module only when that command runs.
"""

from __future__ import annotations

from tui.exit_codes import EXIT_CODES
from tui.frozen_imports import frozen_imports

with frozen_imports():  # a one-shot command's ~60 ms of imports: see the module
    from .args import build_parser
    from .runtime import main, main_async

__all__ = ["EXIT_CODES", "build_parser", "main", "main_async"]
