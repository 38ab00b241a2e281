"""Screens: the main screen, the map dialog, the help screen."""

from .help import HelpScreen
from .main import MainScreen
from .map_dialog import MapDialog

__all__ = ["HelpScreen", "MainScreen", "MapDialog"]
