"""Every import path a wrapper written for the original SDKs uses exists, with the names the
original templates and examples take from it (the full public surface is compared with the real
0.16.0 wheel in ``test_original_surface``)."""

import importlib

import pytest

PATHS = {
    "aiges.sdk": [
        "WrapperBase",
        "StringParamField",
        "ImageBodyField",
        "StringBodyField",
        "AudioBodyField",
        "SessionManager",
        "JsonBodyField",
        "NumberParamField",
        "IntegerParamField",
        "BooleanParamField",
    ],
    "aiges.dto": [
        "Response",
        "ResponseData",
        "DataListNode",
        "DataListCls",
        "SessionCreateResponse",
        "callback",
        "init_rq",
    ],
    "aiges.stream": ["StreamHandleThread", "SessionManager", "WorkerThread"],
    "aiges.types": ["DataText", "DataImage", "DataEnd", "DataOnce", "Once", "Types", "Status"],
    "aiges.core.types": ["DataText", "DataImage", "DataEnd", "DataOnce", "Once", "THREAD_MODE"],
    "aiges.utils.log": ["log", "getLogger", "getFileLogger"],
    "aiges.errors": ["OK", "INIT_ERROR", "USER_INIT_ERROR", "USER_EXEC_ERROR"],
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_compatibility_path_imports_with_its_names(path):
    module = importlib.import_module(path)
    missing = [name for name in PATHS[path] if not hasattr(module, name)]
    assert not missing, f"{path} lacks {missing}"


def test_the_constants_are_the_engines_own():
    from aiges.core import types as core_types
    from aiges.engine.items import DataStatus, DataType
    from aiges.types import DataEnd, DataImage

    assert (DataEnd, DataImage) == (DataStatus.END, DataType.IMAGE)
    assert core_types.DataOnce == DataStatus.ONCE and type(core_types.DataOnce) is int


def test_the_python_wrapper_sdk_imports():
    python_wrapper = pytest.importorskip("python_wrapper")
    assert {"WrapperBase", "WrapperData", "DataType", "DataStatus"} <= set(dir(python_wrapper))
