"""Gradient codecs: real bitstreams with measured sizes (installed as ``gradwire.codecs``).

Importing this package registers every codec in :data:`CODECS`; build one with
``make_codec("qsgd(bits=4, bucket=512)")``.
"""

from gradwire.codecs import (  # noqa: F401  (importing a module registers its codecs)
    fp,
    nuqsgd,
    onebit,
    powersgd,
    qsgd,
    signsgd,
    terngrad,
    topk,
)
from gradwire.codecs.base import CODECS, Codec, CodecState, Payload, make_codec

__all__ = ["CODECS", "Codec", "CodecState", "Payload", "make_codec"]
