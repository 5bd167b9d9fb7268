"""A stand-in sink module whose protocol library is not installed (the registry's error for a missing extra)."""

import not_installed_protocol_lib  # noqa: F401
