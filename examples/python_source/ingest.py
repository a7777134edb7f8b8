"""A relay source plugin written in Python (componentize-py): the `source`
world of relay:plugin@0.1.0. It takes newline-delimited JSON alerts
(`{"id": ..., "rule": ..., "level": 0-15}`, Wazuh style) and makes one event
per line, its id the alert's id (so a re-sent body is deduplicated) and its
severity from the level. Options: {"event_type": "..."}."""
import json

from wit_world.exports import ingest
from componentize_py_types import Err


def severity(level: int) -> str:
    if level >= 12:
        return "critical"
    if level >= 8:
        return "high"
    if level >= 5:
        return "medium"
    if level >= 3:
        return "low"
    return "info"


class Source(ingest.Source):
    def __init__(self, event_type: str):
        self.event_type = event_type

    @classmethod
    def create(cls, options: str) -> "Source":
        opts = json.loads(options or "{}") or {}
        unknown = set(opts) - {"event_type"}
        if unknown:
            raise Err(f"invalid options: unknown field {sorted(unknown)[0]}")
        return cls(str(opts.get("event_type", "wazuh_alert")))

    def parse(self, headers, body: bytes):
        events = []
        for n, line in enumerate(body.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                alert = json.loads(line)
            except ValueError as e:
                raise Err(f"line {n} is not JSON: {e}")
            if not isinstance(alert, dict):
                raise Err(f"line {n} is not a JSON object")
            data = dict(alert)
            data["severity"] = severity(int(alert.get("level", 0)))
            alert_id = alert.get("id")
            events.append(
                ingest.SourceEvent(
                    id=str(alert_id) if alert_id is not None else None,
                    event_type=self.event_type,
                    time=None,
                    data=json.dumps(data),
                )
            )
        return events
