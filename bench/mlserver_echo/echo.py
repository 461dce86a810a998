"""MLServer echo model for the side-by-side benchmark: returns its inputs as its outputs."""

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class EchoModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        outputs = [
            ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data, parameters=i.parameters)
            for i in payload.inputs
        ]
        return InferenceResponse(model_name=self.name, outputs=outputs)
