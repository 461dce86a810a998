"""The personalised resources a worker's wrapper holds: ``LoadResource`` / ``UnloadResource``
load and unload them; a call or a session naming one the worker does not hold
(``aiges.res_ids``) gets 10120 before the wrapper runs."""

from __future__ import annotations

from aiges.engine.items import DataItem
from aiges.engine.resources import RES_IDS_PARAM, parse_res_ids, unknown
from aiges.errors import ErrorCode
from aiges.plugins.contract import Plugin
from aiges.protocol.codecs import owned
from aiges.worker.wrapper import wrapper_call


class WorkerResources:
    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.loaded: set[int] = set()

    def named(self, params: dict[str, str]) -> tuple[int, ...]:
        """The resources a call or a session names (taken out of its params: the wrapper gets
        them as person ids); 10120 for one this worker does not hold."""
        text = params.pop(RES_IDS_PARAM, None)
        if not text:
            return ()
        res_ids = parse_res_ids(text)
        for res_id in res_ids:
            if res_id not in self.loaded:
                raise unknown(res_id)
        return res_ids

    def load(self, res_id: int, items: list[DataItem]) -> None:
        wrapper_call(ErrorCode.WRAPPER_LOAD, self.plugin.load_resource, res_id, owned(items))
        self.loaded.add(res_id)

    def unload(self, res_id: int) -> None:
        if res_id in self.loaded:
            try:
                wrapper_call(ErrorCode.WRAPPER_UNLOAD, self.plugin.unload_resource, res_id)
            finally:  # forgotten by the server either way: calls naming it get 10120 here too
                self.loaded.discard(res_id)
