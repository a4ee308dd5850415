"""Wearable firmware over a serial port: the host mode and an MLPerf-Tiny-style DUT runner.

    frames.py    the binary frame protocol (COBS + CRC-32; docs/serial-protocol.md)
    window.py    windowing of the sample stream; the bounded queue and its policy
    link.py      opening a port, reconnecting with backoff
    host.py      SerialHost: handshake, windows -> Runtime -> result frames, stats
    tiny.py      the EEMBC EnergyRunner / MLPerf Tiny command protocol (DUT mode)
    ecgsim.py    a seeded ECG simulator (McSharry dynamical model): the demo's data
    cli.py       ``edgerun serial host`` / ``edgerun serial tiny``

Nothing here is imported by ``import edgerun``; pyserial and cobs load with these modules.
"""

from __future__ import annotations

from pathlib import Path

#: The bundled ECG demo (tools/build_ecg_demo.py): a 1D CNN over 4 s of simulated ECG at 250 Hz.
ECG_DEMO_DIR = Path(__file__).resolve().parent.parent / "demo" / "ecg"
