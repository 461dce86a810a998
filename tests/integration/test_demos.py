"""The demos serve real work and give the answers their READMEs promise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from aiges.client import Input


def pcm(freq: float, seconds: float, amplitude: float = 0.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize("transport", ["xsf", "stream"])
def test_audio_stream_analyser(serve, transport):
    server = serve(ROOT / "demo" / "audio_stream")
    audio = pcm(220, 0.5) + pcm(440, 0.5, amplitude=0.25) + bytes(3200)
    chunks = [audio[i : i + 3200] for i in range(0, len(audio), 3200)]
    with server.client() as client, client.session(
        params={"sample_rate": "16000"}, expect=["stats", "summary"], transport=transport
    ) as session:
        for index, chunk in enumerate(chunks):
            session.write({"audio": Input(chunk, type=1)}, last=index == len(chunks) - 1)
        items = [item for batch in session.results() for item in batch.items]
    stats = [json.loads(i.data) for i in items if i.name == "stats"]
    [summary] = [json.loads(i.data) for i in items if i.name == "summary"]
    assert [s["chunk"] for s in stats] == list(range(11))
    assert all(abs(s["pitch_hz"] - 220) < 2 for s in stats[:5])
    assert all(abs(s["pitch_hz"] - 440) < 4 for s in stats[5:10])
    assert all(abs(s["rms_dbfs"] + 9.03) < 0.1 for s in stats[:5])
    assert all(abs(s["rms_dbfs"] + 15.05) < 0.1 for s in stats[5:10])
    assert stats[10]["voiced"] is False and stats[10]["rms_dbfs"] == -120.0
    assert summary["chunks"] == 11 and summary["duration_ms"] == 1100.0
    assert summary["voiced_ratio"] == pytest.approx(10 / 11, abs=1e-3)
