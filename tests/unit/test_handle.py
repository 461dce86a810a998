from hypothesis import given
from hypothesis import strategies as st

from aiges.protocol.handle import HANDLE_LENGTH, HandleGenerator, advertised_ipv4, decode_handle


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=65535))
def test_handles_encode_the_address_and_port(ip, port):
    generator = HandleGenerator(str(ip), port)
    handle = generator.next()
    assert len(handle) == HANDLE_LENGTH
    assert handle[0] == "0"
    assert decode_handle(handle) == (str(ip), port)
    int(handle, 16)


def test_handles_are_unique_and_count_up():
    generator = HandleGenerator("10.1.2.3", 5090, first=0)
    handles = [generator.next() for _ in range(1000)]
    assert len(set(handles)) == 1000
    assert handles[0][13:19] == "000000" and handles[1][13:19] == "000001"
    assert handles[0].startswith("00a010203" + "13e2")


def test_unspecified_host_advertises_a_real_address():
    assert advertised_ipv4("127.0.0.1") == "127.0.0.1"
    assert advertised_ipv4("0.0.0.0") != "0.0.0.0"


def test_fronts_sharing_a_port_start_their_counters_apart():
    first, second = HandleGenerator("10.1.2.3", 5090), HandleGenerator("10.1.2.3", 5090)
    assert first.next()[13:19] != second.next()[13:19]


def test_the_counter_wraps_within_its_six_digits():
    generator = HandleGenerator("10.1.2.3", 5090, first=0xFFFFFF)
    assert [generator.next()[13:19] for _ in range(2)] == ["ffffff", "000000"]
