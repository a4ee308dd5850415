"""The version handshake: does a device's HELLO describe a stream this model can take?

A medical model fed at the wrong sample rate, or with channels swapped, gives
confident nonsense: the host refuses such a stream with a HELLO_ACK that says
why (the firmware shows it; the summary lists it) rather than run the model on it.
The sample rate the model expects comes from its manifest
(``provenance.signal.sample_rate_hz``); a model that does not say is not checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgerun.errors import HandshakeError
from edgerun.serialhost import frames as fr

__all__ = ["check_hello", "model_window"]


def model_window(artifact: Any) -> tuple[int | None, int | None, str]:
    """(window samples, channels, layout) the model's raw input implies: (N,) -> (N, 1, "N");
    (N, C) -> "NC"; (C, N) with a small C -> "CN". None where the model leaves it dynamic."""
    shape = tuple(artifact.raw_inputs[0].shape)
    if len(shape) == 1:
        return shape[0], 1, "N"
    if len(shape) == 2:
        if shape[0] is not None and shape[1] is not None and shape[0] <= 16 < shape[1]:
            return shape[1], shape[0], "CN"
        return shape[0], shape[1], "NC"
    raise HandshakeError(f"model raw input {list(shape)}: expected (window,) or (window, channels) for a stream")


def check_hello(hello: fr.Hello, model_channels: int | None, model_rate_hz: float | None) -> tuple[str | None, int]:
    """(why this stream cannot feed the model, ACK status), or (None, ACK_OK)."""
    if hello.protocol_version != fr.PROTOCOL_VERSION:
        why = f"protocol version {hello.protocol_version} unsupported: this host speaks {fr.PROTOCOL_VERSION}"
        return why, fr.ACK_BAD_VERSION
    if hello.sample_type not in fr.SAMPLE_TYPES:
        why = f"sample_type {hello.sample_type} unknown: expected one of {sorted(fr.SAMPLE_TYPES)}"
        return why, fr.ACK_BAD_FORMAT
    if model_channels is not None and hello.channels != model_channels:
        return f"{hello.channels} channels, but the model takes {model_channels}", fr.ACK_BAD_FORMAT
    if hello.channels < 1 or hello.sample_rate_mhz <= 0 or not np.isfinite(hello.scale) or hello.scale == 0:
        why = (
            f"channels {hello.channels}, rate {hello.sample_rate_hz:g} Hz, scale {hello.scale}: "
            "expected >= 1 channel, a positive rate and a finite non-zero scale"
        )
        return why, fr.ACK_BAD_FORMAT
    rate = model_rate_hz
    if rate and abs(hello.sample_rate_hz - rate) > 0.01 * rate:
        why = f"device streams {hello.sample_rate_hz:g} Hz, the model was trained at {rate:g} Hz"
        return why, fr.ACK_BAD_FORMAT
    return None, fr.ACK_OK
