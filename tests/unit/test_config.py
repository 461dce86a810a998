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


LISTED = """
[svcName]
port = 5090
[worker]
count = 3
exec_timeout_ms = 5000
[fc]
max = 50
[wrapper]
shared = "yes"

[[service]]
wrapper = "demo/echo"
[service.worker]
count = 1
gpus = ""

[[service]]
wrapper = "demo/digits"
name = "digits"
version = "v2"
[service.worker]
count = 2
gpus = "0"
[service.fc]
max = 8
[service.config]
model_path = "/models/digits"
"""


def test_the_list_form_takes_each_service_over_the_top_level_sections(tmp_path):
    config = load_config(write(tmp_path, LISTED))
    assert config.listed and config.warnings == ()
    echo, digits = config.specs()
    assert (echo.name, echo.worker.count, echo.worker.gpus, echo.fc.max) == ("", 1, "", 50)
    assert echo.worker.exec_timeout_ms == 5000  # the top-level [worker], as its default
    assert echo.wrapper_path == (tmp_path / "demo" / "echo").resolve()
    assert (digits.name, digits.version, digits.worker.count, digits.worker.gpus, digits.fc.max) == (
        "digits",
        "v2",
        2,
        "0",
        8,
    )
    assert digits.wrapper_config == {"shared": "yes", "model_path": "/models/digits"}
    assert [entry["name"] for entry in config.as_dict()["service"]] == ["", "digits"]


def test_the_single_form_stays_as_it_is(tmp_path):
    text = '[aiges]\nwrapper = "w"\n[worker]\ncount = 2\n[registry]\nservice = "named"\nversion = "v3"\n'
    config = load_config(write(tmp_path, text))
    assert not config.listed and "service" not in config.as_dict()
    (spec,) = config.specs()
    assert (spec.name, spec.version, spec.worker, spec.fc) == ("named", "v3", config.worker, config.fc)
    assert spec.wrapper_path == config.wrapper_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[service]\nwrapper = "a"\n', r"the services are a list: write each as \[\[service\]\]"),
        ('[[service]]\nname = "a"\n', "wrapper is required"),
        ('[[service]]\nwrapper = "a"\nname = "x"\n[[service]]\nwrapper = "b"\nname = "x"\n', "two services are named"),
        ('[aiges]\nwrapper = "w"\n[[service]]\nwrapper = "a"\n', r"\[aiges\] wrapper .* names the single form"),
        ('[registry]\nservice = "s"\n[[service]]\nwrapper = "a"\n', r"\[registry\] service names one service"),
        ('[[service]]\nwrapper = "a"\n[service.wrapper]\nx = 1\n', r"wrapperInit config is its \[service.config\]"),
        ('[[service]]\nwrapper = "a"\n[service.other]\nx = 1\n', r"\[service.other\] \(#1\): unknown table"),
        (
            '[[service]]\nwrapper = "a"\nname = "n"\n[service.worker]\ncount = -1\n',
            r"\[service.n.worker\] count: must be",
        ),
        ('[[service]]\nwrapper = "a"\n[service.worker]\ngpus = "x"\n', "gpus: expected 'auto'"),
    ],
)
def test_list_form_mistakes_are_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_service_added_while_serving_is_read_over_the_daemons_sections(tmp_path):
    from aiges.config import service_spec

    config = load_config(write(tmp_path, LISTED))
    spec = service_spec({"name": "late", "wrapper": "/srv/late", "fc": {"max": 3}, "config": {"k": 1}}, config)
    assert (spec.name, spec.fc.max, spec.worker.count, spec.worker.exec_timeout_ms) == ("late", 3, 3, 5000)
    assert spec.wrapper_config == {"shared": "yes", "k": "1"}
    with pytest.raises(ConfigError, match="wrapper is required"):
        service_spec({"name": "late"}, config)
