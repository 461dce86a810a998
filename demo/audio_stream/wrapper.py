"""Streaming audio analyser: per chunk of 16-bit mono PCM, loudness, pitch and zero-crossing
rate; at the end of the stream, a summary of the whole recording.

Input  "audio"   raw PCM s16le, mono, chunk by chunk (param sample_rate, default 16000)
Output "stats"   per chunk: {"chunk", "start_ms", "duration_ms", "rms_dbfs", "pitch_hz", "voiced", "zcr"}
       "summary" after the last chunk: {"chunks", "duration_ms", "mean_dbfs", "voiced_ratio", "median_pitch_hz"}
"""

from __future__ import annotations

import json

import numpy as np

from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse
from aiges.sdk import AudioBodyField, IntegerParamField, StringBodyField, WrapperBase
from aiges.types import DataContinue, DataEnd

MIN_PITCH_HZ = 60.0
MAX_PITCH_HZ = 800.0
VOICING_THRESHOLD = 0.6
SILENCE_DBFS = -60.0


class AnalyserRequest:
    sample_rate = IntegerParamField(key="sample_rate", minimum=8000, maximum=48000, value=16000)
    audio = AudioBodyField(key="audio", encoding="raw", sample_rate=16000, channels=1, bit_depth=16)


class AnalyserResponse:
    stats = StringBodyField(key="stats", format="json")
    summary = StringBodyField(key="summary", format="json")


def loudness_dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    return round(20 * np.log10(rms), 2) if rms > 0 else -120.0


def pitch_hz(samples: np.ndarray, rate: int) -> tuple[float, bool]:
    """Fundamental frequency by normalised autocorrelation over the plausible lag range."""
    shortest, longest = int(rate / MAX_PITCH_HZ), int(rate / MIN_PITCH_HZ)
    if samples.size < 2 * longest or loudness_dbfs(samples) < SILENCE_DBFS:
        return 0.0, False
    centred = samples - samples.mean()
    spectrum = np.fft.rfft(centred, n=2 * samples.size)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[: samples.size]
    correlation /= correlation[0] or 1.0
    window = correlation[shortest:longest]
    lag = int(np.argmax(window)) + shortest
    if correlation[lag] < VOICING_THRESHOLD:
        return 0.0, False
    left, centre, right = correlation[lag - 1], correlation[lag], correlation[lag + 1]
    denominator = left - 2 * centre + right
    shift = 0.5 * (left - right) / denominator if denominator else 0.0
    return round(rate / (lag + shift), 2), True


class StreamState:
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.samples_seen = 0
        self.chunks = 0
        self.loudness: list[float] = []
        self.pitches: list[float] = []
        self.ready: list[ResponseData] = []
        self.remainder = b""

    def analyse(self, pcm: bytes) -> dict:
        pcm = self.remainder + pcm
        usable = len(pcm) - len(pcm) % 2
        self.remainder = pcm[usable:]
        samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float64) / 32768.0
        pitch, voiced = pitch_hz(samples, self.rate)
        dbfs = loudness_dbfs(samples)
        stats = {
            "chunk": self.chunks,
            "start_ms": round(1000 * self.samples_seen / self.rate, 1),
            "duration_ms": round(1000 * samples.size / self.rate, 1),
            "rms_dbfs": dbfs,
            "pitch_hz": pitch,
            "voiced": voiced,
            "zcr": round(float(np.mean(np.abs(np.diff(np.signbit(samples).astype(np.int8))))), 4)
            if samples.size > 1
            else 0.0,
        }
        self.chunks += 1
        self.samples_seen += samples.size
        self.loudness.append(dbfs)
        if voiced:
            self.pitches.append(pitch)
        return stats

    def summary(self) -> dict:
        return {
            "chunks": self.chunks,
            "duration_ms": round(1000 * self.samples_seen / self.rate, 1),
            "mean_dbfs": round(float(np.mean(self.loudness)), 2) if self.loudness else -120.0,
            "voiced_ratio": round(len(self.pitches) / self.chunks, 3) if self.chunks else 0.0,
            "median_pitch_hz": round(float(np.median(self.pitches)), 2) if self.pitches else 0.0,
        }


class Wrapper(WrapperBase):
    serviceId = "audio_stream"
    version = "v1"
    requestCls = AnalyserRequest()
    responseCls = AnalyserResponse()

    def wrapperInit(self, config: dict) -> int:
        self.sessions: dict[str, StreamState] = {}
        return 0

    def wrapperError(self, ret: int) -> str:
        return {1: "sample_rate must be an integer between 8000 and 48000"}.get(ret, f"error {ret}")

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        try:
            rate = int(params.get("sample_rate", 16000))
        except ValueError:
            return SessionCreateResponse(error_code=1)
        if not 8000 <= rate <= 48000:
            return SessionCreateResponse(error_code=1)
        self.sessions[usrTag] = StreamState(rate)
        return SessionCreateResponse(handle=usrTag)

    def wrapperWrite(self, handle: str, reqData: DataListCls) -> int:
        state = self.sessions[handle]
        for item in reqData.list:
            if item.data:
                state.ready.append(
                    ResponseData(key="stats", data=json.dumps(state.analyse(item.data)), status=DataContinue)
                )
            if item.status == DataEnd:
                state.ready.append(ResponseData(key="summary", data=json.dumps(state.summary()), status=DataEnd))
        return 0

    def wrapperRead(self, handle: str) -> Response:
        state = self.sessions[handle]
        ready, state.ready = state.ready, []
        return Response(ready)

    def wrapperDestroy(self, handle: str) -> int:
        self.sessions.pop(handle, None)
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        """A whole recording in one call: the summary only."""
        state = StreamState(int(params.get("sample_rate", 16000)))
        for item in reqData.list:
            state.analyse(item.data)
        return Response([ResponseData(key="summary", data=json.dumps(state.summary()))])

    def wrapperFini(self) -> int:
        return 0
