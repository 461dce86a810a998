"""The overload benchmark's model for PyTriton (``bench/overload.py``), run with PyTriton's own
interpreter (bench/.work/pytriton-venv):

    serve.py GRPC_PORT HTTP_PORT METRICS_PORT INSTANCES

A Python callable bound as model ``sleep`` with INSTANCES instances (one BYTES input ``sent``,
returned as output ``sent``), batching off: each call logs its start against the caller's send
time in ``bench/start_log.py``'s log and sleeps 20 ms.
"""

import sys
import time
from pathlib import Path

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from start_log import from_environment  # noqa: E402

LOG, SERVICE_S = from_environment()


def sleep(requests):
    replies = []
    for request in requests:
        sent = request["sent"]
        LOG.started(sent.reshape(-1)[0])
        time.sleep(SERVICE_S)
        replies.append({"sent": sent})
    return replies


def main() -> None:
    grpc_port, http_port, metrics_port, instances = (int(p) for p in sys.argv[1:5])
    config = TritonConfig(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="sleep",
            infer_func=[sleep] * instances,
            inputs=[Tensor(name="sent", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="sent", dtype=np.bytes_, shape=(1,))],
            config=ModelConfig(batching=False),
        )
        triton.serve()


if __name__ == "__main__":
    main()
