"""The overload benchmark's model for MLServer (``bench/overload.py``): each call sleeps 20 ms,
holding its parallel worker as a GPU kernel would, after logging its start against the caller's
send time (the ``sent`` input) in ``bench/start_log.py``'s log."""

import sys
import time
from pathlib import Path

from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from start_log import from_environment  # noqa: E402


class SleepModel(MLModel):
    async def load(self) -> bool:
        self.log, self.service_s = from_environment()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        sent = StringCodec.decode_input(payload.inputs[0])[0]
        self.log.started(sent)
        time.sleep(self.service_s)  # blocking on purpose: the worker is busy, as with a real model
        return InferenceResponse(model_name=self.name, outputs=[StringCodec.encode_output("sent", [sent])])
