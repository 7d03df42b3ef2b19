"""An existing recording as a source: an MCAP file, a rosbag2 bag directory, or a session.

Messages keep their CDR bytes and their original receive times; topics the profile does
not list are skipped and counted. DemoFab episode events in the input are not passed on:
the session records its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..errors import SourceError
from ..profile import EVENTS_TOPIC, Profile
from . import RawMessage, register_source


class BagSource:
    clock = "sim"

    def __init__(self, profile: Profile, path: str | Path) -> None:
        self.profile = profile
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"source {self.path} does not exist")
        self.skipped: Counter[str] = Counter()
        self.type_mismatch: dict[str, str] = {}
        self._closed = False

    def _files(self) -> list[Path]:
        if self.path.is_dir():
            files = sorted(self.path.glob("*.mcap"))
            if not files:
                raise SourceError(f"{self.path}: no .mcap files in this directory")
            return files
        return [self.path]

    def messages(self) -> Iterator[RawMessage]:
        from mcap.reader import make_reader

        wanted = {t.topic: t.type for t in self.profile.topics if t.topic != EVENTS_TOPIC}
        for file in self._files():
            with open(file, "rb") as f:
                try:
                    reader = make_reader(f)
                    for schema, channel, msg in reader.iter_messages(log_time_order=True):
                        if self._closed:
                            return
                        topic = channel.topic
                        if topic not in wanted:
                            self.skipped[topic] += 1
                            continue
                        if schema is not None and schema.name != wanted[topic]:
                            self.type_mismatch[topic] = schema.name
                            self.skipped[topic] += 1
                            continue
                        yield RawMessage(topic, msg.data, msg.log_time, msg.publish_time,
                                         None)
                except Exception as exc:
                    if isinstance(exc, GeneratorExit):
                        raise
                    raise SourceError(f"{file}: cannot read as MCAP: {exc}") from exc

    def close(self) -> None:
        self._closed = True


register_source("bag", lambda profile, path, **_: BagSource(profile, path))
register_source("mcap", lambda profile, path, **_: BagSource(profile, path))
