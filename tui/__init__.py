"""natdeck's front ends: the Textual TUI and the ``natdeck`` command line (:mod:`tui.cli`)."""
