"""``xtest.toml``, with the original AIGes xtest's keys, and the command-line overrides."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiges.client.values import TYPE_CODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class XtestConfigError(Exception):
    pass


@dataclass
class InputSpec:
    """One ``[data] payload`` section: files to send under ``name``, whole or sliced."""

    name: str
    type: int
    files: list[Path]
    attributes: dict[str, str]
    slice_on: bool = False
    slice_size: int = 1280
    interval_ms: float = 40
    inline: bytes | None = None

    @property
    def variants(self) -> int:
        """How many different payloads this input cycles through."""
        return len(self.files) if self.inline is None else 1

    def data(self, index: int) -> bytes:
        if self.inline is not None:
            return self.inline
        return self.files[index % len(self.files)].read_bytes()


@dataclass
class ExpectSpec:
    name: str
    type: int
    attributes: dict[str, str]


@dataclass
class XtestConfig:
    addresses: list[str] = field(default_factory=list)
    concurrency: int = 1
    requests: int = 1
    duration_s: float | None = None
    rate: float | None = None
    session: bool = False
    timeout_ms: int = 10000
    ramp_ms: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    inputs: list[InputSpec] = field(default_factory=list)
    expect: list[ExpectSpec] = field(default_factory=list)
    output_mode: int = -1
    output_path: Path = Path("xtest-results")
    service_id: str = ""


def describe_pairs(text: str) -> dict[str, str]:
    """``"k=v;k=v"`` -> dict."""
    pairs = {}
    for part in str(text or "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


def parse_addresses(text: str) -> list[str]:
    """``"svc@1.2.3.4:5090,1.2.3.5:5090"`` -> ["1.2.3.4:5090", "1.2.3.5:5090"]."""
    addresses = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if part:
            addresses.append(part.rpartition("@")[2])
    return addresses


def as_int(section: dict[str, Any], key: str, default: int, where: str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return int(text == "true")
    try:
        return int(float(text))
    except ValueError:
        raise XtestConfigError(f"{where} {key}: expected a number, got {value!r}") from None


def load_xtest(path: Path | None) -> XtestConfig:
    config = XtestConfig()
    if path is None:
        return config
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise XtestConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise XtestConfigError(f"{path}: invalid TOML: {exc}") from None
    base = path.parent
    config.addresses = parse_addresses(data.get("xtest", {}).get("taddrs", ""))
    mode = data.get("svcMode", {})
    where = f"{path}: [svcMode]"
    config.concurrency = max(as_int(mode, "multiThr", 1, where), 1)
    config.requests = max(as_int(mode, "loopCnt", 1, where), 1)
    config.session = as_int(mode, "sessMode", 0, where) != 0
    config.timeout_ms = as_int(mode, "timeout", 10000, where)
    config.ramp_ms = as_int(mode, "linearMs", 0, where)
    config.service_id = str(mode.get("svcId", mode.get("service", "")))
    config.headers = {k: str(v) for k, v in data.get("header", {}).items()}
    config.params = {k: str(v) for k, v in data.get("parameter", {}).items()}
    sections = data.get("data", {})
    for name in filter(None, (s.strip() for s in str(sections.get("payload", "")).split(";"))):
        section = data.get(name)
        if section is None:
            raise XtestConfigError(f"{path}: [data] payload names [{name}], which does not exist")
        config.inputs.append(input_spec(path, base, name, section))
    for name in filter(None, (s.strip() for s in str(sections.get("expect", "")).split(";"))):
        section = data.get(name)
        if section is None:
            raise XtestConfigError(f"{path}: [data] expect names [{name}], which does not exist")
        config.expect.append(
            ExpectSpec(
                str(section.get("name", name)),
                data_type(path, name, section),
                describe_pairs(section.get("describe", "")),
            )
        )
    downstream = data.get("downstream", {})
    config.output_mode = as_int(downstream, "output", -1, f"{path}: [downstream]")
    config.output_path = base / str(downstream.get("outputDst", "xtest-results"))
    return config


def data_type(path: Path, name: str, section: dict[str, Any]) -> int:
    type_name = str(section.get("type", "text")).lower()
    if type_name not in TYPE_CODES:
        raise XtestConfigError(f"{path}: [{name}] type: expected one of {', '.join(TYPE_CODES)}, got {type_name!r}")
    return TYPE_CODES[type_name]


def input_spec(path: Path, base: Path, name: str, section: dict[str, Any]) -> InputSpec:
    source = section.get("inputSrc")
    if not source:
        raise XtestConfigError(f"{path}: [{name}] inputSrc is missing")
    source_path = Path(source) if Path(source).is_absolute() else base / source
    if source_path.is_dir():
        files = sorted(p for p in source_path.iterdir() if p.is_file())
    elif source_path.is_file():
        files = [source_path]
    else:
        raise XtestConfigError(f"{path}: [{name}] inputSrc {source_path}: no such file or folder")
    if not files:
        raise XtestConfigError(f"{path}: [{name}] inputSrc {source_path}: the folder is empty")
    where = f"{path}: [{name}]"
    return InputSpec(
        name=str(section.get("name", name)),
        type=data_type(path, name, section),
        files=files,
        attributes=describe_pairs(section.get("describe", "")),
        slice_on=as_int(section, "sliceOn", 0, where) != 0,
        slice_size=max(as_int(section, "sliceSize", 1280, where), 1),
        interval_ms=as_int(section, "interval", 40, where),
    )
