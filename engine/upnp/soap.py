"""Reading a SOAP reply from an IGD, pure: the out-arguments, or the UPnP fault it carries.

async-upnp-client builds the requests (from the service description's actions); its reply
parser drops (non-strict) or refuses (strict) arguments the description does not declare, and
miniupnpd's AddAnyPortMapping answers ``NewReservedPort`` where its own description says
``NewExternalPort``. So replies are read here, by local name, with defusedxml.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

__all__ = ["SoapFault", "SoapReply", "local_name", "parse_reply"]

#: Longest errorDescription kept (it ends up in a message a user reads).
_MAX_DETAIL = 200


@dataclass(frozen=True, slots=True)
class SoapFault:
    """A UPnP error: ``errorCode`` and the gateway's ``errorDescription``."""

    code: int
    description: str


@dataclass(frozen=True, slots=True)
class SoapReply:
    """A successful reply: each out-argument's text by its name ("" for an empty element)."""

    arguments: dict[str, str]


def local_name(tag: str) -> str:
    """``{urn:...}NewExternalPort`` -> ``NewExternalPort``."""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _find(root: Element, name: str) -> Element | None:
    for element in root.iter():
        if local_name(element.tag) == name:
            return element
    return None


def parse_reply(body: str, action: str, status: int) -> SoapReply | SoapFault:
    """The reply to ``action`` in ``body`` (HTTP ``status``). Raises ``ValueError`` with the
    reason when it is neither a reply to that action nor a UPnP fault."""
    try:
        root = SafeElementTree.fromstring(body)
    except (ParseError, DefusedXmlException) as exc:
        raise ValueError(f"the reply to {action} is not XML ({exc})") from None
    fault = _find(root, "UPnPError")
    if fault is not None:
        code_text = "".join(child.text or "" for child in fault
                            if local_name(child.tag) == "errorCode").strip()
        detail = "".join(child.text or "" for child in fault
                         if local_name(child.tag) == "errorDescription").strip()
        if not (code_text.isascii() and code_text.isdigit() and len(code_text) <= 4):
            raise ValueError(f"the fault {action} got carries no valid errorCode")
        detail = detail[:_MAX_DETAIL]
        # Text from the network reaches a terminal: control characters are shown escaped.
        return SoapFault(int(code_text), detail if detail.isprintable() else repr(detail))
    if status != 200:
        raise ValueError(f"{action} got HTTP {status} without a UPnP error")
    response = _find(root, f"{action}Response")
    if response is None:
        raise ValueError(f"the reply carries no {action}Response")
    return SoapReply({local_name(child.tag): (child.text or "").strip() for child in response})
