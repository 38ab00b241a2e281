"""Integration tests over loopback UDP against the simulated gateway."""
