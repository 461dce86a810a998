"""GPU probe for scripts/gpu_check.py: what torch sees in this worker, and a small CUDA matmul."""

import os

from aiges.dto import Response, ResponseData
from aiges.sdk import WrapperBase


class Wrapper(WrapperBase):
    serviceId = "gpu_check"

    def wrapperInit(self, config):
        import torch

        self.torch = torch
        return 0

    def wrapperOnceExec(self, params, reqData):
        torch = self.torch
        a = torch.randn(1024, 1024, device="cuda")
        product = (a @ a).sum().item()
        torch.cuda.synchronize()
        return Response(
            [
                ResponseData(
                    key="probe",
                    data={
                        "worker": os.environ.get("AIGES_WORKER_ID"),
                        "pid": os.getpid(),
                        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                        "device_count": torch.cuda.device_count(),
                        "device_name": torch.cuda.get_device_name(0),
                        "matmul_finite": bool(torch.isfinite(torch.tensor(product)).item()),
                        "memory_allocated": torch.cuda.memory_allocated(0),
                    },
                )
            ]
        )

    def wrapperFini(self):
        return 0
