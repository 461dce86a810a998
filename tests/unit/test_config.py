from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiges.config import ConfigError, load_config, parse_gpus


def write(tmp_path, text):
    path = tmp_path / "aiges.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    config = load_config(None)
    assert config.service.port == 5090
    assert config.fc.max == 100
    assert config.worker.gpus == "auto"
    assert config.header_pass == ("sid",)


def test_original_sections_and_values(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
[myService]
host = "127.0.0.1"
port = "6000"
finder = 0
[aiges]
wrapper = "w"
headerPass = "appid;uid"
realTimeRlt = "false"
sessDelGt = 4
[fc]
max = 20
ttl = 10000
able = 1
[wrapper]
"log.level" = "debug"
threshold = 0.5
flag = true
[wrapper.model]
path = "/models/a"
[trace]
able = 0
""",
        ),
        service="myService",
    )
    assert config.service.port == 6000
    assert config.service.host == "127.0.0.1"
    assert config.aiges.realTimeRlt is False
    assert config.header_pass == ("appid", "uid", "sid")
    assert config.fc.max == 20
    assert config.wrapper == {"log.level": "debug", "threshold": "0.5", "flag": "true", "model.path": "/models/a"}
    assert config.wrapper_path == (tmp_path / "w").resolve()
    assert "[trace]" in config.ignored and "[aiges] sessDelGt" in config.ignored
    assert config.warnings == ()


def test_the_service_section_is_chosen_with_s(tmp_path):
    path = write(tmp_path, "[svcName]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"\[svcName\]: unknown section; the service section is \[other\]"):
        load_config(path, service="other")


def test_overrides(tmp_path):
    config = load_config(write(tmp_path, "[svcName]\nport = 1\n"), host="::", port=7, wrapper="x.py")
    assert (config.service.host, config.service.port) == ("::", 7)
    assert config.aiges.wrapper.endswith("x.py")


def test_unknown_key_is_a_warning(tmp_path):
    config = load_config(write(tmp_path, "[worker]\ncoutn = 2\n"))
    assert config.warnings == (f"{tmp_path / 'aiges.toml'}: [worker] coutn: unknown key, ignored",)


@given(st.integers(min_value=1, max_value=10**6))
def test_integers_written_as_strings_are_accepted(value):
    assert load_config(None).fc.max == 100
    from aiges.config import FcSection, _coerce

    spec = next(f for f in FcSection.__dataclass_fields__.values() if f.name == "max")
    assert _coerce("f", "fc", "max", spec, str(value)) == value
    assert _coerce("f", "fc", "max", spec, value) == value


NOT_INTEGERS = st.one_of(
    st.floats(), st.lists(st.integers()), st.booleans(), st.text().filter(lambda t: not t.strip().lstrip("-").isdigit())
)


@given(NOT_INTEGERS)
def test_non_integers_are_rejected(value):
    from aiges.config import FcSection, _coerce

    spec = FcSection.__dataclass_fields__["max"]
    with pytest.raises(ConfigError, match=r"f: \[fc\] max: "):
        _coerce("f", "fc", "max", spec, value)


def test_parse_gpus():
    assert parse_gpus("auto") is None
    assert parse_gpus("") == []
    assert parse_gpus("0, 2") == [0, 2]


def test_http_listen_from_http_section_or_the_original_wrapper_key(tmp_path):
    assert load_config(None).http_listen == ""
    original = load_config(write(tmp_path, '[wrapper]\nhttp_listen = "0.0.0.0:8080"\n'))
    assert original.http_listen == "0.0.0.0:8080"
    both = load_config(write(tmp_path, '[http]\nlisten = "127.0.0.1:9000"\n[wrapper]\nhttp_listen = "0.0.0.0:8080"\n'))
    assert both.http_listen == "127.0.0.1:9000" and both.http.cors == ""  # CORS is off unless named


def test_cors_tls_and_auth_sections(tmp_path):
    listed = load_config(write(tmp_path, '[http]\ncors = ["https://a.example", "https://b.example"]\n'))
    assert listed.http.cors == "https://a.example,https://b.example"
    assert load_config(write(tmp_path, '[http]\ncors = "*"\n')).http.cors == "*"
    config = load_config(
        write(
            tmp_path,
            '[tls]\ncert = "tls/server.pem"\nkey = "tls/server.key"\nclient_ca = "/etc/ca.pem"\n'
            '[auth]\nmode = "hmac"\nskew_s = 60\n',
        )
    )
    assert config.relative_path(config.tls.cert) == (tmp_path / "tls" / "server.pem").resolve()
    assert str(config.relative_path(config.tls.client_ca)) == "/etc/ca.pem"
    assert config.auth.mode == "hmac" and config.auth.skew_s == 60 and config.auth.keys == "keys.toml"
    assert load_config(None).auth.mode == "none" and load_config(None).tls.cert == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tls]\ncert = "a.pem"\n', "cert and key go together"),
        ('[tls]\nclient_ca = "ca.pem"\n', "client_ca needs cert and key"),
        ('[auth]\nmode = "basic"\n', "must be one of none, hmac"),
        ("[http]\ncors = [1]\n", "expected a string"),
    ],
)
def test_tls_and_auth_mistakes_are_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))
