"""A python_wrapper-style wrapper (PyPI aiges-wrapper) that uses every framework callback.

exec: meters the input's length as "chars", logs a metric, a trace and an event entry, and
answers "out" = the input upper-cased (params fail=1: error 7). Sessions: every written chunk
comes back upper-cased through async_callback, from a thread of the session's own; a chunk
b"boom" is answered with an async error. init sets a load-balancer label.
"""

import queue
import threading

from python_wrapper import DataStatus, WrapperBase, WrapperData


class Reporter(WrapperBase):
    def __init__(self):
        self.sessions = {}

    def init(self, cfg):
        self.update_lb_extra({"model": cfg.get("model", "m1")})
        return 0

    def fini(self):
        return 0

    def version(self):
        return "2.5.0"

    def error(self, err_num):
        return {7: "asked to fail"}.get(err_num, f"error code {err_num}")

    def exec(self, usr_tag, params, data_list, psr_ids):
        data = data_list[0].data
        self.meter_custom(usr_tag, "chars", len(data))
        self.meter_custom_ex(usr_tag, "billing-app", "web", "calls", 1)
        self.metrics_log(usr_tag, "input_bytes", {"model": "m1"}, len(data))
        self.trace_log(usr_tag, "stage", "exec")
        self.eventlog(usr_tag, "model", "m1")
        if params.get("fail"):
            return ([], 7)
        return ([WrapperData(key="out", data=data.upper())], 0)

    def create(self, usr_tag, params, psr_ids):
        chunks: queue.Queue[WrapperData | None] = queue.Queue()
        self.sessions[usr_tag] = chunks
        threading.Thread(target=self._answer, args=(usr_tag, chunks), daemon=True).start()
        return (usr_tag, 0)

    def _answer(self, handle, chunks):
        while True:
            item = chunks.get()
            if item is None:
                return
            if item.data == b"boom":
                self.async_callback(handle, [], err_code=5, err_msg="the chunk exploded")
                return
            status = DataStatus.END if item.status == DataStatus.END else DataStatus.CONTINUE
            self.async_callback(handle, [WrapperData(key="out", data=item.data.upper(), status=status)])

    def write(self, handle, data_list):
        for item in data_list:
            self.sessions[handle].put(item)
        return 0

    def read(self, handle):
        return ([], 0)

    def destroy(self, handle):
        chunks = self.sessions.pop(handle, None)
        if chunks is not None:
            chunks.put(None)
        return 0
