"""Gradient codecs: real bitstreams with measured sizes (installed as ``gradwire.codecs``)."""

from gradwire.codecs.base import CODECS, Codec, CodecState, Payload, make_codec

__all__ = ["CODECS", "Codec", "CodecState", "Payload", "make_codec"]
