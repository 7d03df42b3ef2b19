"""An existing recording as a source: an MCAP file, a rosbag2 bag directory, or a session.

A directory is read in the order of its bag listing (``contract.BAG_METADATA``: a session's
finished episodes, a rosbag2 bag's splits), else its ``.mcap`` files by name. Messages keep
their CDR bytes and their original receive times; topics the profile does not list are
skipped and counted. DemoFab episode events in the input are not passed on: the session
records its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..contract import BAG_METADATA, EVENTS_TOPIC, MCAP_SUFFIX, read_bag_listing
from ..errors import RecorderError, SourceError
from ..profile import Profile
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
        if not self.path.is_dir():
            return [self.path]
        try:
            listing = read_bag_listing(self.path)
        except RecorderError as exc:
            raise SourceError(str(exc)) from exc
        if listing is None:
            files = sorted(self.path.glob(f"*{MCAP_SUFFIX}"))
            if not files:
                raise SourceError(f"{self.path}: no {MCAP_SUFFIX} files in this directory")
            return files
        if listing.storage and listing.storage != "mcap":
            raise SourceError(f"{listing.path}: the bag is stored as {listing.storage!r}; "
                              "only MCAP bags can be read")
        files = [self.path / name for name in listing.files]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise SourceError(f"{listing.path} lists {', '.join(missing)}, not found in "
                              f"{self.path}")
        if not files:
            raise SourceError(f"{self.path}: {BAG_METADATA} lists no files")
        return files

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


def _factory(profile: Profile, path: str | Path, **_: Any) -> BagSource:
    return BagSource(profile, path)


register_source("bag", _factory)
register_source("mcap", _factory)
