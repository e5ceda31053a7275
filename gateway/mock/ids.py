"""Object ids in OpenAI's shape: a type prefix, an underscore, 24 random alphanumerics."""

from __future__ import annotations

import os
import string

__all__ = ["new_id"]

_ALPHABET = string.ascii_letters + string.digits
# Each random byte names one character (256 = 4 * 62 + 8: the first 8 characters come up 5 times
# in 256 instead of 4, harmless for a simulator's ids). One read of the system's random source
# per id, where a choice per character cost 24 (a tenth of the simulator's CPU under load).
_TABLE = bytes(ord(_ALPHABET[b % len(_ALPHABET)]) for b in range(256))


def new_id(prefix: str) -> str:
    """A fresh id such as ``run_Xy12...``; ``prefix`` is ``asst``, ``thread``, ``msg``, ``run``,
    ``step`` or ``call``."""
    return prefix + "_" + os.urandom(24).translate(_TABLE).decode()
