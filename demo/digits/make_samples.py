"""Writes test_data/<digit>.png: unseen images of the digits data, upscaled, dark on light."""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def sample_png(index: int, size: int = 96) -> bytes:
    import io

    digits = load_digits()
    pixels = (255 - digits.images[index] / 16 * 255).astype(np.uint8)
    image = Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    digits = load_digits()
    out = Path(__file__).parent / "test_data"
    out.mkdir(exist_ok=True)
    for digit, name in enumerate(NAMES):
        index = next(i for i in range(1500, len(digits.target)) if digits.target[i] == digit)
        (out / f"{name}.png").write_bytes(sample_png(index))
