"""Handwritten-digit classifier: scikit-learn's bundled digits, trained at wrapperInit, exported to
ONNX and served with onnxruntime.

Input  "image"   a PNG or JPEG of one digit, any size, dark on light or light on dark
Output "result"  {"label": int, "probabilities": [10 floats]}
"""

from __future__ import annotations

import io

import numpy as np

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import ImageBodyField, StringBodyField, WrapperBase
from aiges.utils.log import log

TRAIN_SAMPLES = 1500  # the first 1500 of the 1797 images; the rest stay unseen for evaluation
ERR_BAD_IMAGE = 1
ERR_NO_IMAGE = 2


class DigitsRequest:
    image = ImageBodyField(key="image", path="test_data/seven.png", encoding="png")


class DigitsResponse:
    result = StringBodyField(key="result", format="json")


def to_features(image_bytes: bytes) -> np.ndarray:
    """Any image -> the 8x8 grey (0..16, ink high) form the digits data uses: the ink's bounding
    box, centred in a square, averaged down to 8x8 (the data's digits fill their box)."""
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(image_bytes))
    image.load()
    grey = np.asarray(ImageOps.grayscale(image), dtype=np.float32)
    if grey.mean() > 127:  # dark ink on a light background: invert, ink must be high
        grey = 255 - grey
    ink = np.argwhere(grey > 32)
    if ink.size:
        (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0) + 1
        grey = grey[top:bottom, left:right]
    side = max(grey.shape)
    square = np.zeros((side, side), dtype=np.float32)
    y, x = (side - grey.shape[0]) // 2, (side - grey.shape[1]) // 2
    square[y : y + grey.shape[0], x : x + grey.shape[1]] = grey
    small = Image.fromarray(square.astype(np.uint8)).resize((8, 8), Image.Resampling.BOX)
    features = np.asarray(small, dtype=np.float32) / 255 * 16
    return features.reshape(1, 64)


class Wrapper(WrapperBase):
    serviceId = "digits"
    version = "v1"
    requestCls = DigitsRequest()
    responseCls = DigitsResponse()

    def wrapperInit(self, config: dict) -> int:
        import onnxruntime
        from skl2onnx import to_onnx
        from sklearn.datasets import load_digits
        from sklearn.svm import SVC

        digits = load_digits()
        model = SVC(probability=True, random_state=0)
        model.fit(digits.data[:TRAIN_SAMPLES].astype(np.float32), digits.target[:TRAIN_SAMPLES])
        onnx_model = to_onnx(model, digits.data[:1].astype(np.float32), options={id(model): {"zipmap": False}})
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        held_out = self.session.run(None, {self.input_name: digits.data[TRAIN_SAMPLES:].astype(np.float32)})[0]
        accuracy = (held_out == digits.target[TRAIN_SAMPLES:]).mean()
        log.info("digits model ready: %.3f accuracy on %d unseen images", accuracy, len(held_out))
        return 0

    def wrapperError(self, ret: int) -> str:
        return {
            ERR_BAD_IMAGE: "the image cannot be decoded (PNG or JPEG expected)",
            ERR_NO_IMAGE: "no input named image",
        }.get(ret, f"error {ret}")

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        image = reqData.get("image")
        if image is None:
            return Response().response_err(ERR_NO_IMAGE)
        try:
            features = to_features(image.data)
        except (OSError, ValueError):
            return Response().response_err(ERR_BAD_IMAGE)
        label, probabilities = self.session.run(None, {self.input_name: features})
        result = {"label": int(label[0]), "probabilities": [round(float(p), 6) for p in probabilities[0]]}
        return Response([ResponseData(key="result", data=result)])

    def wrapperFini(self) -> int:
        return 0
