"""Deprecated: world specs moved to :mod:`rho.data.worlds` ("profile" now means a study profile only).

``DataProfile`` is :class:`~rho.data.worlds.WorldSpec`, ``PROFILES`` is
:data:`~rho.data.worlds.WORLDS`, ``get_profile`` is :func:`~rho.data.worlds.get_world` and
``ProfileError`` is :class:`~rho.data.worlds.WorldError`.
"""

from __future__ import annotations

import warnings

from rho.data.worlds import WORLDS, WorldError, WorldSpec, get_world

DataProfile = WorldSpec
PROFILES = WORLDS
ProfileError = WorldError
get_profile = get_world

warnings.warn(
    "rho.data.profiles is deprecated: use rho.data.worlds (WorldSpec, WORLDS, get_world, WorldError)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["PROFILES", "DataProfile", "ProfileError", "get_profile"]
