"""Numeric tensors through the OIP fronts: "x" (any numeric datatype and shape) comes back doubled
as FP32 "y" of the same shape, and "stats" says what arrived."""

import json

import numpy as np

from aiges.dto import Response, ResponseData
from aiges.sdk import StringBodyField, WrapperBase

DTYPES = {"UINT8": "u1", "INT32": "<i4", "INT64": "<i8", "FP32": "<f4", "FP64": "<f8"}


class Request:
    x = StringBodyField(key="x", required=True)


class Reply:
    y = StringBodyField(key="y")
    stats = StringBodyField(key="stats", format="json")


class Wrapper(WrapperBase):
    serviceId = "tensors"
    version = "3"
    requestCls = Request()
    responseCls = Reply()

    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        item = reqData.get("x")
        shape = [int(d) for d in item.desc["shape"].split(",")]
        array = np.frombuffer(item.data, DTYPES[item.desc["datatype"]]).reshape(shape)
        doubled = (array.astype("<f4") * 2).tobytes()
        stats = {
            "datatype": item.desc["datatype"],
            "shape": shape,
            "sum": float(array.sum()),
            "params": params,
            "inputs": [i.key for i in reqData.list],
        }
        return Response(
            [
                ResponseData(key="y", data=doubled, desc={"datatype": "FP32", "shape": item.desc["shape"]}),
                ResponseData(key="stats", data=json.dumps(stats).encode()),
            ]
        )

    def wrapperFini(self):
        return 0
