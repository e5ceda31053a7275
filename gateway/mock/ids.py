"""Object ids in OpenAI's shape: a type prefix, an underscore, 24 random alphanumerics."""

from __future__ import annotations

import secrets
import string

__all__ = ["new_id"]

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A fresh id such as ``run_Xy12...``; ``prefix`` is ``asst``, ``thread``, ``msg``, ``run``,
    ``step`` or ``call``."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
