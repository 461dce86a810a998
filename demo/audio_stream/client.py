"""Stream a tone (or a raw PCM file) to the analyser and print its per-chunk stats and summary.

python demo/audio_stream/client.py --addr 127.0.0.1:5091                # a 220 Hz then 440 Hz tone
python demo/audio_stream/client.py --addr 127.0.0.1:5091 --pcm speech.pcm
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aiges.client import Client, Input


def tone(freqs=(220.0, 440.0), seconds=1.0, rate=16000, amplitude=0.5) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = np.concatenate([amplitude * np.sin(2 * np.pi * f * t) for f in freqs])
    return (wave * 32767).astype("<i2").tobytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:5091")
    parser.add_argument("--pcm", help="raw s16le mono PCM file")
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--chunk-ms", type=int, default=100)
    parser.add_argument("--transport", choices=["xsf", "stream"], default="stream")
    args = parser.parse_args()
    pcm = Path(args.pcm).read_bytes() if args.pcm else tone(rate=args.rate)
    step = args.rate * 2 * args.chunk_ms // 1000
    chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    with (
        Client(args.addr) as client,
        client.session(
            params={"sample_rate": str(args.rate)}, expect=["stats", "summary"], transport=args.transport
        ) as session,
    ):
        for index, chunk in enumerate(chunks):
            session.write({"audio": Input(chunk, type=1)}, last=index == len(chunks) - 1)
        for batch in session.results():
            for item in batch.items:
                print(item.name, json.loads(item.data))


if __name__ == "__main__":
    main()
