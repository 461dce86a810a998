"""A Python client for aiges (and any AIGes loader): one-shot calls and streaming sessions.

from aiges.client import Client

with Client("127.0.0.1:5090") as client:
    result = client.once({"text": b"hello"}, expect=["text"])
    print(result["text"])

    with client.session(expect=["text"]) as session:
        session.write({"text": b"chunk 1"})
        session.write({"text": b"chunk 2"}, last=True)
        for batch in session.results():
            print(batch.items)
"""

from aiges.client.credentials import SigningKey, TlsOptions
from aiges.client.registry import BalancedClient, EtcdProviders, NoProviderError
from aiges.client.values import AigesCallError, Input, Item, Result
from aiges.client.xsf_client import Client

__all__ = [
    "Client",
    "Input",
    "Item",
    "Result",
    "AigesCallError",
    "BalancedClient",
    "EtcdProviders",
    "NoProviderError",
    "SigningKey",
    "TlsOptions",
]
