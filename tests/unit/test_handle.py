import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiges.protocol.handle import (
    HANDLE_LENGTH,
    RANDOM_BITS,
    XSF_MIN_LENGTH,
    HandleGenerator,
    advertised_ipv4,
    decode_handle,
    front_of,
    read_handle,
)


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=65535), st.integers(min_value=0, max_value=255))
def test_handles_encode_the_address_port_and_front(ip, port, front):
    handle = HandleGenerator(str(ip), port, front).next()
    assert len(handle) == HANDLE_LENGTH >= XSF_MIN_LENGTH
    assert handle[0] == "0" and handle == handle.lower()
    int(handle, 16)
    assert decode_handle(handle) == (str(ip), port)
    assert read_handle(handle).front == front == front_of(handle)


def test_what_an_xsf_client_reads_is_the_original_prefix():
    """Characters 1-8 the address and 9-12 the port, as the original's client slices them."""
    handle = HandleGenerator("10.1.2.3", 5090, front=7).next()
    assert handle.startswith("0" + "0a010203" + "13e2" + "07")
    assert handle[1:9] == "0a010203" and int(handle[9:13], 16) == 5090


def test_handles_carry_128_random_bits():
    generator = HandleGenerator("10.1.2.3", 5090)
    handles = [generator.next() for _ in range(2000)]
    assert len(set(handles)) == len(handles)
    randoms = [int(handle[15:], 16) for handle in handles]
    assert all(value < 1 << RANDOM_BITS for value in randoms)
    # every one of the 128 bits takes both values (a counter or a clock would leave the high ones fixed)
    ones, zeros = 0, 0
    for value in randoms:
        ones |= value
        zeros |= ~value
    assert ones == zeros & ((1 << RANDOM_BITS) - 1) == (1 << RANDOM_BITS) - 1
    # and consecutive handles are not close to one another
    assert min(abs(a - b) for a, b in zip(randoms, randoms[1:], strict=False)) > 1 << 64


def test_handles_of_another_form_are_read_as_clients_read_them():
    original = "0" + "0a010203" + "13e2" + "000001" + "0000005"  # the original's 26 characters
    assert decode_handle(original) == ("10.1.2.3", 5090)
    assert front_of(original) is None
    chosen = "0" + "7f000001" + "13e2" + "x" * 40  # a client's own handle, longer and not hex
    assert decode_handle(chosen) == ("127.0.0.1", 5090) and front_of(chosen) is None
    for short in ("", "0" * 25):
        with pytest.raises(ValueError, match="at least 26"):
            decode_handle(short)
        assert front_of(short) is None
    with pytest.raises(ValueError, match="hex"):
        decode_handle("0zz" + "0" * 30)


def test_front_indices_fit_two_hex_digits():
    for bad in (-1, 256):
        with pytest.raises(ValueError):
            HandleGenerator("10.1.2.3", 5090, bad)


def test_unspecified_host_advertises_a_real_address():
    assert advertised_ipv4("127.0.0.1") == "127.0.0.1"
    assert advertised_ipv4("0.0.0.0") != "0.0.0.0"
