"""The adapters make both wrapper styles look the same to the worker."""

import sys

import pytest
from conftest import ROOT, WRAPPERS

from aiges.engine.items import DataItem
from aiges.errors import AigesError
from aiges.plugins.contract import PluginLoadError, bind_arguments, to_bytes
from aiges.plugins.loader import load_plugin


@pytest.fixture(autouse=True)
def fresh_wrapper_module():
    yield
    sys.modules.pop("wrapper", None)
    sys.modules.pop("aiges_embed", None)  # installed by loads with a host, as in a worker


def test_class_style_echo():
    plugin = load_plugin(ROOT / "demo" / "echo")
    plugin.init({})
    assert plugin.style == "class"
    assert plugin.service_id == "echo"
    assert "stream" in plugin.capabilities
    [item] = plugin.once("tag", {"prefix": ">"}, [DataItem("text", b"hi", 0, 3)])
    assert (item.key, item.data, item.status) == ("text", b">hi", 3)


def test_class_style_error_code_and_text():
    plugin = load_plugin(WRAPPERS / "faulty")
    plugin.init({})
    with pytest.raises(AigesError) as failure:
        plugin.once("t", {"mode": "error"}, [DataItem("text", b"")])
    assert failure.value.code == 10909
    assert failure.value.message == "seven is not allowed;code=7"


def test_function_style_stream_uses_the_historical_destroy_name():
    plugin = load_plugin(WRAPPERS / "functional")
    plugin.init({"a": "1"})
    assert plugin.style == "function"
    assert plugin.capabilities == {"once", "stream", "read"}
    handle = plugin.create("tag-1", {})
    plugin.write(handle, [DataItem("a", b"abc", 0, 1)])
    [item] = plugin.read(handle)
    assert item.data == b"cba"
    plugin.destroy(handle)
    assert sys.modules["wrapper"].sessions == {}


class RecordingHost:
    """A PluginHost that keeps what the plugin reports."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        def record(*args):
            self.calls.append((name, *args))
            return 0

        return record


def test_python_wrapper_style_is_detected_and_adapted():
    pytest.importorskip("python_wrapper")
    host = RecordingHost()
    plugin = load_plugin(WRAPPERS / "reporter", host=host)
    plugin.init({"model": "m2"})
    assert (plugin.style, plugin.version) == ("python_wrapper", "2.5.0")
    assert plugin.capabilities == {"once", "stream", "read", "resources"}
    [item] = plugin.once("tag-9", {}, [DataItem("text", b"ab", 0, 3)])
    assert (item.key, item.data, item.status) == ("out", b"AB", 3)
    with pytest.raises(AigesError) as failure:
        plugin.once("tag-9", {"fail": "1"}, [DataItem("text", b"ab", 0, 3)])
    assert (failure.value.code, failure.value.message) == (10909, "asked to fail;code=7")
    assert ("lb_labels", {"model": "m2"}) in host.calls
    assert ("usage", "tag-9", "billing-app", "web", "calls", 1) in host.calls
    assert ("metric", "input_bytes", {"model": "m1"}, 2) in host.calls


def test_init_failure_carries_the_wrapper_error_text():
    plugin = load_plugin(WRAPPERS / "init_fails")
    with pytest.raises(PluginLoadError, match="wrapperInit returned 42: the model file is missing"):
        plugin.init({})


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(PluginLoadError, match="does not exist"):
        load_plugin(tmp_path / "nothing.py")
    with pytest.raises(PluginLoadError, match="folder without a wrapper.py"):
        load_plugin(tmp_path)
    with pytest.raises(PluginLoadError, match="ModuleNotFoundError"):
        load_plugin(WRAPPERS / "broken_import")


def test_argument_binding_accepts_both_shim_orders():
    calls: list[tuple] = []

    class Head:
        def wrapperCreate(self, params, sid, persId=0, usrTag=""):
            calls.append(("head", params, sid, persId, usrTag))

    class Older:
        def wrapperCreate(self, params, sid, userTag):
            calls.append(("older", params, sid, userTag))

    class Renamed:
        def wrapperWrite(self, handle, req, sid):
            calls.append(("write", handle, req, sid))

    values = {"params": {"a": "1"}, "sid": "S", "pers": 0, "tag": "T", "handle": "H", "req": "R"}
    bind_arguments(Head().wrapperCreate, ("params", "sid", "pers", "tag"))(values)
    bind_arguments(Older().wrapperCreate, ("params", "sid", "pers", "tag"))(values)
    bind_arguments(Renamed().wrapperWrite, ("handle", "req", "sid"))(values)
    assert calls == [
        ("head", {"a": "1"}, "S", 0, "T"),
        ("older", {"a": "1"}, "S", "T"),
        ("write", "H", "R", "S"),
    ]


def test_result_data_conversion():
    assert to_bytes(b"x") == b"x"
    assert to_bytes("é") == "é".encode()
    assert to_bytes({"a": [1, {"b": None}]}) == b'{"a": [1, {"b": null}]}'
    assert to_bytes(None) == b""
    import numpy as np

    assert to_bytes({"v": np.arange(3)}) == b'{"v": [0, 1, 2]}'
