"""The checks a call gets against the wrapper's declared fields, in the worker, before the
wrapper runs: a bad param is 10107, a missing required input 10009, each naming the field.
Inputs the wrapper does not declare pass unchecked."""

from __future__ import annotations

import math

from aiges.engine.items import DataItem
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.contract import DeclaredFields
from aiges.sdk import BooleanParamField, IntegerParamField, NumberParamField, ParamField, PayloadField, StringParamField


class Validator:
    """Checks params and inputs against a wrapper's declared fields."""

    def __init__(self, fields: DeclaredFields) -> None:
        self.params: dict[str, ParamField] = dict(fields.params)
        self.inputs: dict[str, PayloadField] = dict(fields.inputs)

    @property
    def empty(self) -> bool:
        return not self.params and not self.inputs

    def check(self, params: dict[str, str], items: list[DataItem], inputs: bool = True) -> None:
        """Raise on the first violation. ``inputs`` False (a session's first frame, whose data
        may come later) checks the params only."""
        for key, field in self.params.items():
            value = params.get(key)
            if value is None:
                if field.required:
                    raise AigesError(ErrorCode.INVALID_PARAM_VALUE, f"parameter {key!r} is required")
                continue
            self._check_param(key, field, value)
        if not inputs:
            return
        present = {item.key for item in items}
        for key, declared in self.inputs.items():
            if declared.required and key not in present:
                raise AigesError(ErrorCode.INVALID_DATA, f"input {key!r} is missing")

    @staticmethod
    def _check_param(key: str, field: ParamField, value: str) -> None:
        def invalid(why: str) -> AigesError:
            return AigesError(ErrorCode.INVALID_PARAM_VALUE, f"parameter {key!r} {why}, got {value!r}")

        if isinstance(field, BooleanParamField):
            if value.lower() not in ("true", "false", "1", "0"):
                raise invalid("must be true or false")
            return
        if isinstance(field, NumberParamField):
            try:
                number = int(value) if isinstance(field, IntegerParamField) else float(value)
            except ValueError:
                kind = "an integer" if isinstance(field, IntegerParamField) else "a number"
                raise invalid(f"must be {kind}") from None
            if isinstance(number, float) and not math.isfinite(number):
                raise invalid("must be a finite number")
            if field.enums:
                if number not in field.enums:
                    raise invalid(f"must be one of {list(field.enums)}")
            elif not field.minimum <= number <= field.maximum:
                raise invalid(f"must be between {field.minimum} and {field.maximum}")
            return
        if isinstance(field, StringParamField):
            if field.enums and value not in field.enums:
                raise invalid(f"must be one of {list(field.enums)}")
            if not field.enums and not field.minLength <= len(value) <= field.maxLength:
                raise invalid(f"must be {field.minLength} to {field.maxLength} characters long")
