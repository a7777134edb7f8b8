"""A relay formatter written in Python (componentize-py), proving the WIT
contract relay:plugin@0.1.0 is language-neutral. Options: {"prefix": "..."}."""
import json

from wit_world.exports import format as fmt
from wit_world.imports import types
from componentize_py_types import Err


class Formatter(fmt.Formatter):
    def __init__(self, prefix: str):
        self.prefix = prefix

    @classmethod
    def create(cls, options: str) -> "Formatter":
        opts = json.loads(options or "{}") or {}
        unknown = set(opts) - {"prefix"}
        if unknown:
            raise Err(f"invalid options: unknown field {sorted(unknown)[0]}")
        return cls(str(opts.get("prefix", "[py]")))

    def format(self, event: types.Event) -> types.Payload:
        data = json.loads(event.data or "{}")
        title = data.get("title") or event.event_type
        body = {"text": f"{self.prefix} {event.event_type}: {title}", "event_id": event.id}
        return types.Payload(content_type="application/json", body=json.dumps(body).encode())
