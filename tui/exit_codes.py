"""natdeck's exit statuses: one table for the command line and the terminal UI.

Scripts depend on these numbers (the README documents them); add, never renumber.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NO_GATEWAY",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNCONFIRMED",
    "EXIT_USAGE",
    "exit_code_for",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_NO_GATEWAY = 4
EXIT_UNCONFIRMED = 5
EXIT_INTERRUPTED = 130

#: The exit statuses, for ``--help`` and for scripts that want names.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (map --hold and watch: also when stopped by SIGINT/SIGTERM)",
    EXIT_FAILURE: "failure: the gateway refused (result code), or another error",
    EXIT_USAGE: "usage: bad arguments; nothing was sent",
    EXIT_TIMEOUT: "no answer: the gateway stayed silent until --timeout",
    EXIT_NO_GATEWAY: "no gateway found by discovery (pass --gateway)",
    EXIT_UNCONFIRMED: "unmap: the gateway accepted the delete, but whether the mapping "
                      "is gone could not be checked",
    EXIT_INTERRUPTED: "interrupted (SIGINT) during a one-shot command",
}


def exit_code_for(exc: BaseException) -> int:
    """The exit status for an error that ends a command: silence 3, no gateway 4, else 1."""
    from engine.errors import GatewayTimeout, NoGatewayError

    if isinstance(exc, GatewayTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, NoGatewayError):
        return EXIT_NO_GATEWAY
    return EXIT_FAILURE
