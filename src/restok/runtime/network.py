"""Whether restok may use the network: decided once, from the environment, before any Hub client or downloader is
touched (``RESTOK_OFFLINE`` or ``HF_HUB_OFFLINE``); every downloader of the package asks :func:`offline` first."""

from __future__ import annotations

import os

__all__ = ["offline", "OFFLINE_VARIABLES", "OfflineError", "settle_offline"]

OFFLINE_VARIABLES = ("RESTOK_OFFLINE", "HF_HUB_OFFLINE")


class OfflineError(OSError):
    """Something needs the network and the environment says offline."""


def offline() -> bool:
    """True when the environment asks for no network (``RESTOK_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES)


def settle_offline() -> bool:
    """Resolve the offline setting once for every library restok calls, before any Hub client is made; returns it.

    ``huggingface_hub`` honours only its own ``HF_HUB_OFFLINE``, read when it is imported, and even with
    ``local_files_only`` it makes requests of its own (version 2.4 fetches an agent registry while building headers):
    so offline, restok sets that variable and, if the library is already imported, its constant too."""
    if not offline():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    return True
