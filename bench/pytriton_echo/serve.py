"""PyTriton's echo, run with PyTriton's own interpreter (bench/.work/pytriton-venv):

    serve.py GRPC_PORT HTTP_PORT METRICS_PORT

A plain Python callable bound as model ``echo`` (one BYTES input ``data``, returned as output
``data``), batching off: like for like with aiges's echo demo and MLServer's echo model. Triton's
C++ server fronts it; PyTriton runs the callable in this process, reached over its own IPC.
"""

import sys

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def echo(requests):
    return [{"data": request["data"]} for request in requests]


def main() -> None:
    grpc_port, http_port, metrics_port = (int(p) for p in sys.argv[1:4])
    config = TritonConfig(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="echo",
            infer_func=echo,
            inputs=[Tensor(name="data", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="data", dtype=np.bytes_, shape=(1,))],
            config=ModelConfig(batching=False),
        )
        triton.serve()


if __name__ == "__main__":
    main()
