"""Wire formats: NAT-PMP (RFC 6886) and PCP (RFC 6887) messages as frozen dataclasses.

Pure code: bytes in, messages out, and back. Decoders raise
:class:`engine.errors.MalformedPacket` and nothing else.
"""
