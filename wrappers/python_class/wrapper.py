"""Template: a class-style wrapper. Copy this folder, fill in the three methods, serve it.

aiges serve --wrapper wrappers/python_class
"""

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import ImageBodyField, StringBodyField, StringParamField, WrapperBase
from aiges.utils.log import log


class UserRequest:
    """Declared inputs: params (capability parameters) and payloads (data)."""

    mode = StringParamField(key="mode", enums=["fast", "accurate"], value="fast")
    image = ImageBodyField(key="image", path="test_data/sample.jpg")


class UserResponse:
    """Declared outputs: each becomes an entry clients name in `expect`."""

    result = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "my_service"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config: dict) -> int:
        """Load the model once per worker; `config` is the [wrapper] section. Return 0 on success."""
        log.info("init with %s", config)
        self.model = None
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        """One request. Return a Response; `Response().response_err(code)` reports a failure."""
        image = reqData.get("image")
        if image is None:
            return Response().response_err(100)
        return Response([ResponseData(key="result", data={"bytes": len(image.data), "mode": params.get("mode")})])

    def wrapperError(self, ret: int) -> str:
        return {100: "the request carries no image"}.get(ret, f"error {ret}")

    def wrapperFini(self) -> int:
        return 0
