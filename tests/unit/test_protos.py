"""The committed stubs are exactly what ``make proto`` generates from proto/, and the messages
keep the original's package names and field numbers."""

from pathlib import Path

import pytest
from conftest import ROOT
from grpc_tools import protoc

from aiges.protocol import v2_pb2, xsf_pb2


def test_stubs_are_not_stale(tmp_path):
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        *protos,
    ]
    assert protoc.main(args) == 0
    generated = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert generated
    for path in generated:
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run make proto"
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run make proto"


@pytest.mark.parametrize(
    ("message", "full_name", "fields"),
    [
        (xsf_pb2.ReqData, "utils.ReqData", {"op": 1, "s": 2, "param": 3, "data": 4}),
        (xsf_pb2.ResData, "utils.ResData", {"code": 1, "error_info": 2, "s": 3, "param": 4, "data": 5}),
        (xsf_pb2.Session, "utils.Session", {"t": 1, "h": 2, "sess": 3}),
        (xsf_pb2.DataMeta, "utils.DataMeta", {"data": 1, "desc": 3}),
        (
            v2_pb2.LoaderInput,
            "protocol.LoaderInput",
            {
                "serviceId": 1,
                "serviceName": 2,
                "state": 3,
                "headers": 4,
                "params": 5,
                "expect": 6,
                "pl": 7,
                "sync_id": 8,
            },
        ),
        (v2_pb2.LoaderOutput, "protocol.LoaderOutput", {"serviceId": 1, "code": 2, "err": 3, "status": 4, "pl": 5}),
        (v2_pb2.MetaDesc, "protocol.MetaDesc", {"name": 1, "dataType": 2, "attribute": 3}),
        (v2_pb2.Payload, "protocol.Payload", {"meta": 1, "data": 2}),
    ],
)
def test_wire_names_and_numbers(message, full_name, fields):
    descriptor = message.DESCRIPTOR
    assert descriptor.full_name == full_name
    assert {f.name: f.number for f in descriptor.fields} == fields


def test_services():
    services = {s.full_name: [m.name for m in s.methods] for s in xsf_pb2.DESCRIPTOR.services_by_name.values()}
    assert services == {"utils.XsfCall": ["call"], "utils.ToolBox": ["cmdserver"]}
    assert v2_pb2.LoaderInput.ONCE == 1 and v2_pb2.LoaderInput.STREAM == 0
    assert v2_pb2.LoaderOutput.END == 2 and v2_pb2.LoaderOutput.ONCE == 3
    assert Path(v2_pb2.__file__).name == "v2_pb2.py"


def field_shapes(descriptor) -> dict:
    """Every field's number, type and cardinality, nested messages and map entries included."""
    shapes = {}
    for field in descriptor.fields:
        nested = field_shapes(field.message_type) if field.message_type is not None else None
        shapes[field.name] = (field.number, field.type, field.is_repeated, nested)
    return shapes


def test_oip_messages_match_tritonclients_wire_format():
    service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2", reason="tritonclient is not installed")
    from aiges.protocol import oip_pb2

    theirs = service_pb2.DESCRIPTOR.message_types_by_name
    ours = oip_pb2.DESCRIPTOR.message_types_by_name
    assert len(ours) == 22  # with the model repository extension
    for name, descriptor in ours.items():
        assert field_shapes(descriptor) == field_shapes(theirs[name]), name
