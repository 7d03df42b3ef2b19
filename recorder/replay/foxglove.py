"""Live replay into Foxglove: ``demofab replay SESSION|EPISODE --to foxglove``.

A selection is served over the Foxglove WebSocket protocol with ``foxglove-sdk`` (the
``view`` extra), played by the same timing core as ``--to dds|ros2``: a
:class:`~recorder.replay.player.Player` (its schedule, read-ahead and control calls), here
as :class:`FoxglovePlayer`, which only hands the publisher each message's recorded log
time beside its bytes.

What the app gets:

* one channel per recorded topic, with the recorded ``ros2msg`` schema and the CDR bytes
  as recorded, logged at their recorded log times, so the Image, Plot, Raw Messages and
  3D panels decode them natively;
* the recorded time range (``serverInfo``'s ``dataStartTime`` / ``dataEndTime``) and the
  playback-control capability: the app's play, pause, seek and speed requests drive the
  player (:meth:`Player.resume`, :meth:`~Player.pause`, :meth:`~Player.seek`,
  :meth:`~Player.set_rate`) and are answered with the playback state; the server
  broadcasts the playback time (``time``, 60 Hz) and the end of the selection;
* ``/demofab/log`` (``foxglove.Log``): each episode's start and end as the playback
  crosses it (with task, operator and outcome), and every recorded episode event
  (``/demofab/episode_events`` is also served as recorded);
* the robot description: the recording's URDF attachment as ``/robot_description``
  (``std_msgs/msg/String``, latched: sent again to a late subscriber and after each
  seek) and as an asset (``fetchAsset``) at ``package://demofab/robot_description.urdf``;
  other attachments are served by name, so a URDF's ``package://`` meshes resolve when
  the recording carries them.

The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..contract import EPISODE_EVENT_TYPE
from ..profile import Qos
from .errors import ReplayError
from .foxglove_facts import (
    ROBOT_DESCRIPTION_TOPIC,
    ROBOT_DESCRIPTION_URI,
    SelectionFacts,
    episode_text,
    event_text,
    no_delay,
    position_of,
    recorded_at,
    time_range,
)
from .options import ReplayOptions
from .player import Player
from .readahead import Batch, Marker, Reader
from .timeline import Timeline

if TYPE_CHECKING:
    from foxglove.websocket import ChannelView, Client, PlaybackControlRequest, PlaybackState

__all__ = ["DEFAULT_PORT", "LOG_TOPIC", "ROBOT_DESCRIPTION_TOPIC", "ROBOT_DESCRIPTION_URI",
           "FoxglovePlayer", "FoxglovePublisher", "FoxgloveReplay", "layout_path",
           "require_foxglove"]

NS = 1_000_000_000
DEFAULT_PORT = 8765
LOG_TOPIC = "/demofab/log"
TIME_HZ = 60.0                 # how often the playback time is broadcast
MIN_RATE, MAX_RATE = 0.01, 100.0
#: after a seek while nothing plays, the latched topics follow the answer by this much, so
#: they reach the app after the seek state that clears its panels
LATCHED_AFTER_S = 0.05
_STRING = "std_msgs/msg/String"


def require_foxglove() -> ModuleType:
    """``foxglove`` (the ``foxglove-sdk`` package), or a ReplayError saying how to get it."""
    try:
        import foxglove
        import foxglove.websocket
    except ImportError as exc:
        raise ReplayError("replay --to foxglove needs foxglove-sdk: pip install 'demofab[view]' "
                          f"({exc})") from exc
    return foxglove


def layout_path(profile: str = "humanoid") -> Path:
    """The Foxglove layout shipped for a recording profile (import it in the app)."""
    path = Path(str(importlib.resources.files("recorder") / "layouts" / f"{profile}.json"))
    if not path.is_file():
        raise ReplayError(f"no Foxglove layout for profile {profile!r} (looked for {path})")
    return path


# ------------------------------------------------------------------------ the player side
class _StampingReader:
    """A read-ahead whose batches carry, in place of each message's bytes, ``(recorded
    log time, bytes, episode position)``: the player passes them through to
    :meth:`FoxglovePublisher.publish` untouched."""

    def __init__(self, inner: Reader, timeline: Timeline) -> None:
        self.inner = inner
        self._shift = [e.start_ns - e.offset_ns for e in timeline.episodes]

    @property
    def error(self) -> BaseException | None:
        return self.inner.error

    @error.setter
    def error(self, value: BaseException | None) -> None:
        self.inner.error = value

    @property
    def due_ns(self) -> int:
        return self.inner.due_ns

    @due_ns.setter
    def due_ns(self, value: int) -> None:
        self.inner.due_ns = value

    @property
    def wakeups(self) -> int:
        return self.inner.wakeups

    @wakeups.setter
    def wakeups(self, value: int) -> None:
        self.inner.wakeups = value

    def start(self) -> None:
        self.inner.start()

    def poll(self) -> None:
        self.inner.poll()

    def close(self) -> None:
        self.inner.close()

    def take(self, timeout: float) -> Batch | Marker | None:
        got = self.inner.take(timeout)
        if not isinstance(got, list):
            return got
        shift = self._shift
        out: Batch = []
        for item in got:
            if isinstance(item, tuple):
                a, p, topic, data, pos = item
                stamped: Any = (p + shift[pos], data, pos)
                out.append((a, p, topic, stamped, pos))
            else:
                out.append(item)
        return out


class FoxglovePlayer(Player):
    """The :class:`Player`, unchanged but for its read-ahead, which stamps each message
    with its recorded log time for :class:`FoxglovePublisher`; each (re)start of the
    reading (the start of play, a seek) tells the publisher where playback now is."""

    def __init__(self, source: str | Path | Sequence[str | Path], publisher: FoxglovePublisher,
                 options: ReplayOptions | None = None) -> None:
        super().__init__(source, publisher, options)
        self.foxglove = publisher

    def _reader(self, topics: list[str], p0: int) -> Reader:
        self.foxglove.restarted(recorded_at(self.timeline, p0), p0 == 0)
        return _StampingReader(super()._reader(topics, p0), self.timeline)


# --------------------------------------------------------------------- the publisher side
class FoxglovePublisher:
    """Foxglove channels in their own SDK context: a :class:`~recorder.replay.Publisher`
    (and ``ClockPublisher``: the playback time is broadcast as the protocol's ``time``)
    for :class:`FoxglovePlayer`. :meth:`serve` starts the WebSocket server for a
    timeline before the player creates its topics."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 name: str = "demofab replay") -> None:
        self._fox = require_foxglove()
        self.host, self.port, self.name = host, port, name
        self.context = self._fox.Context()
        self.server: Any = None
        self.facts: SelectionFacts | None = None
        self.timeline: Timeline | None = None
        self.skipped: dict[str, str] = {}
        self.sent: int = 0                      # messages logged on recorded topics
        self._channels: list[Any] = []
        self._events: Any = None                # the handle of the events topic
        self._log: Any = None
        self._description: Any = None
        self._description_cdr = b""
        self._episode = -1                      # episode position of the last message
        self._resend_at: int | None = None      # latched topics to send again (recorded ns)
        self._resumed = False                   # playing from a seek, not an episode start
        self._last = -1                         # log time of the last message
        #: called (player thread) when recorded time goes back without a seek
        self.on_time_jump: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------------
    def serve(self, timeline: Timeline, listener: Any = None) -> Any:
        """Start the server for ``timeline`` (its time range, schemas and attachments);
        ``listener`` (a ``foxglove.websocket.ServerListener``) gets the app's requests."""
        from foxglove.channels import LogChannel
        from foxglove.websocket import Capability

        from ..types import serialize, typestore

        fox = self._fox
        self.timeline = timeline
        self.facts = facts = SelectionFacts.read(timeline)
        self._log = LogChannel(LOG_TOPIC, context=self.context)
        store = typestore()   # loaded now, not at the first event or latched message
        _warm_up()
        if facts.robot_description is not None:
            text = facts.robot_description.data.decode("utf-8", errors="replace")
            self._description_cdr = serialize(store.types[_STRING](data=text), _STRING)
            self._description = fox.Channel(
                ROBOT_DESCRIPTION_TOPIC, message_encoding="cdr", context=self.context,
                schema=fox.Schema(name=_STRING, encoding="ros2msg", data=b"string data\n"))
        try:
            self.server = fox.start_server(
                name=self.name, host=self.host, port=self.port, context=self.context,
                capabilities=[Capability.Time], playback_time_range=time_range(timeline),
                server_listener=listener, asset_handler=facts.asset)
        except Exception as exc:  # the SDK raises its own RuntimeError on a taken port
            raise ReplayError(f"cannot serve Foxglove on {self.host}:{self.port}: {exc}") from exc
        self.port = int(self.server.port)
        return self.server

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def create(self, topic: str, msgtype: str, qos: Qos) -> Any:
        if self.facts is None:
            raise ReplayError("FoxglovePublisher.serve(timeline) must come before the player "
                              "creates its topics")
        schema = self.facts.schemas.get(msgtype)
        if schema is None:
            self.skipped[topic] = f"no schema for {msgtype} in the recording"
            return None
        encoding, data = schema
        metadata = {"qos_reliability": qos.reliability, "qos_durability": qos.durability}
        channel = self._fox.Channel(topic, message_encoding="cdr", context=self.context,
                                    schema=self._fox.Schema(name=msgtype, encoding=encoding,
                                                            data=data),
                                    metadata=metadata)
        self._channels.append(channel)
        if msgtype == EPISODE_EVENT_TYPE:     # also when remapped: its events go to the Log
            self._events = channel.base
        return channel.base

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- playing --------------------------------------------------------------------------
    def publish(self, handle: Any, data: Any) -> None:
        """``data``: ``(recorded log time, CDR bytes, episode position)`` from
        :class:`FoxglovePlayer`."""
        log_time, payload, pos = data
        if log_time < self._last:
            self._went_back(log_time)
        self._last = log_time
        if pos != self._episode:
            self._cross(pos, log_time)
        if self._resend_at is not None:
            self._send_latched(log_time)
        handle.log(payload, log_time)
        self.sent += 1
        if handle is self._events:
            self.log(event_text(payload), log_time, name="demofab.events")

    def publish_clock(self, ns: int) -> None:
        """The playback time (the player calls this at its clock rate, paused or not)."""
        assert self.timeline is not None
        if self._resend_at is not None:
            self._send_latched(ns)
        if self.server is not None:
            self.server.broadcast_time(ns)

    def log(self, text: str, log_time: int, *, name: str = "demofab.replay",
            warning: bool = False) -> None:
        """One line in the app's Log panel, at recorded time ``log_time``."""
        from foxglove.messages import Log, LogLevel, Timestamp

        level = LogLevel.Warning if warning else LogLevel.Info
        self._log.log(Log(timestamp=Timestamp(log_time // NS, log_time % NS), level=level,
                          message=text, name=name), log_time=log_time)

    def restarted(self, at_ns: int, from_start: bool) -> None:
        """The player (re)started reading at recorded time ``at_ns`` (the start of play or
        a seek): send the latched topics again with the next message or time tick, once
        the app has cleared its panels, and say which episode plays."""
        with self._lock:
            self._resend_at = at_ns
            self._episode = -1
            self._resumed = not from_start
            self._last = -1

    def _went_back(self, log_time: int) -> None:
        """Recorded time went back without a seek (a loop, or episodes played out of their
        recorded order): the app must clear its panels as after a seek."""
        self.ended()                    # the end of the episode that was playing
        with self._lock:
            self._resend_at = log_time
        if self.on_time_jump is not None:
            self.on_time_jump(log_time)

    def send_latched(self, at_ns: int) -> None:
        """Send the latched topics now (a client subscribed, or nothing is playing)."""
        with self._lock:
            self._resend_at = at_ns
        self._send_latched(at_ns)

    def _send_latched(self, log_time: int) -> None:
        with self._lock:
            if self._resend_at is None:
                return
            self._resend_at = None
        if self._description is not None:
            self._description.log(self._description_cdr, log_time=log_time)

    def _cross(self, pos: int, log_time: int) -> None:
        """The playback entered episode ``pos``: end of the one before, start of this one
        (or, after a seek, where it plays from)."""
        assert self.timeline is not None and self.facts is not None
        eps = self.timeline.episodes
        if 0 <= self._episode < len(eps):
            prev = eps[self._episode]
            self.log(episode_text(self.facts, self.timeline, self._episode, "end"),
                     min(prev.end_ns, log_time))
        self._episode = pos
        start = eps[pos].start_ns
        what = (f"playing from {(log_time - start) / NS:.3f} s"
                if self._resumed and log_time > start else "start")
        self._resumed = False
        self.log(episode_text(self.facts, self.timeline, pos, what), log_time)

    def ended(self) -> None:
        """The selection played to its end: log the end of the last episode."""
        assert self.timeline is not None and self.facts is not None
        if self._episode >= 0:
            ep = self.timeline.episodes[self._episode]
            self.log(episode_text(self.facts, self.timeline, self._episode, "end"), ep.end_ns)
            self._episode = -1


def _warm_up() -> None:
    """Build once, before playing, what the first event and Log line would otherwise build
    on a deadline: the typestore's EpisodeEvent deserializer (generated on first use, some
    milliseconds) and the SDK's Log message type."""
    from foxglove.messages import Log, LogLevel, Timestamp

    from ..contract import EpisodeInfo, EventKind
    from ..session import make_event

    event_text(make_event(EventKind.START, 0, EpisodeInfo(index=0, episode_id="", file="",
                                                          task="", operator="", start_ns=0)))
    Log(timestamp=Timestamp(0, 0), level=LogLevel.Info, message="", name="").encode()


# --------------------------------------------------------------------------- the server
class FoxgloveReplay:
    """A selection served to the Foxglove app with playback control. :meth:`start` begins
    serving, paused at the start until the app says play (or, with ``autoplay``, until the
    first client subscribes); :meth:`stop` ends it. The app's requests drive
    :attr:`player`; at the end of the selection the server stays up (state "ended") until
    a seek or play starts it again."""

    def __init__(self, source: str | Path | Sequence[str | Path],
                 options: ReplayOptions | None = None, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, autoplay: bool = False,
                 publisher: FoxglovePublisher | None = None) -> None:
        opt = options or ReplayOptions()
        # not started paused: the player starts at the first play (a player that plays
        # paused from its start lets its position run on until the first message is read)
        opt = dataclasses.replace(opt, clock_hz=opt.clock_hz or TIME_HZ, start_paused=False)
        self.publisher = publisher or FoxglovePublisher(host=host, port=port)
        self.player = FoxglovePlayer(source, self.publisher, opt)
        self.timeline = self.player.timeline
        self.time_range = time_range(self.timeline)
        self.autoplay = autoplay
        self._fox = require_foxglove()
        self._cond = threading.Condition()
        self._ended = False
        self._started = False           # the player runs (from a play request to the end)
        self._pending_at: int | None = None   # a seek's time while the player does not run
        self._closing = threading.Event()
        self._controlled = False        # a control request came (no autoplay after it)
        self._subscribers = 0
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.server = self.publisher.serve(self.timeline, _listener(self))
        self.publisher.on_time_jump = lambda at: self._broadcast(did_seek=True, at_ns=at)
        try:
            self.player.prepare()
        except BaseException:
            self.publisher.close()           # no server left behind a failed start
            raise

    @property
    def url(self) -> str:
        return self.publisher.url

    @property
    def port(self) -> int:
        return self.publisher.port

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def subscribers(self) -> int:
        return self._subscribers

    def current_time(self) -> int:
        """The recorded time at the playback position (or where a seek put it while the
        player does not run)."""
        pending = self._pending_at
        if pending is not None:
            return pending
        return recorded_at(self.timeline, int(self.player.position_s * NS))

    # -- running --------------------------------------------------------------------------
    def start(self) -> FoxgloveReplay:
        if self._thread is not None:
            raise ReplayError("this Foxglove replay was already started")
        self._thread = threading.Thread(target=self._drive, name="demofab-foxglove", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (or an error); whether serving has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if not self._thread.is_alive() and self.error is not None:
            raise self.error
        return not self._thread.is_alive()

    def stop(self) -> None:
        with self._cond:
            self._closing.set()
            self._cond.notify_all()
        self.player.stop()
        if self._thread is not None:
            self._thread.join(10.0)
        self.publisher.close()

    def __enter__(self) -> FoxgloveReplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _drive(self) -> None:
        """Play from each play request to the end of the selection (or :meth:`stop`); at
        the end, say so and wait for the next play."""
        try:
            while True:
                with self._cond:
                    while not self._started and not self._closing.is_set():
                        self._cond.wait()
                    if self._closing.is_set():
                        return
                    self._pending_at = None
                self.player.play()
                with self._cond:
                    if self._closing.is_set():
                        return
                    self._ended, self._started = True, False
                self.publisher.ended()
                self._broadcast()
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
            self.error = exc

    def _broadcast(self, *, did_seek: bool = False, at_ns: int | None = None) -> None:
        if self.server is not None:
            self.server.broadcast_playback_state(self.state(did_seek=did_seek, at_ns=at_ns))

    def state(self, *, did_seek: bool = False, request_id: str | None = None,
              at_ns: int | None = None) -> PlaybackState:
        from foxglove.websocket import PlaybackState, PlaybackStatus

        status = (PlaybackStatus.Ended if self._ended else
                  PlaybackStatus.Paused if self.player.paused or not self._started
                  else PlaybackStatus.Playing)
        return PlaybackState(status=status,
                             current_time=self.current_time() if at_ns is None else at_ns,
                             playback_speed=self.player.rate, did_seek=did_seek,
                             request_id=request_id)

    # -- the app's requests (the SDK's threads) -------------------------------------------
    def control(self, request: PlaybackControlRequest) -> PlaybackState:
        """Play, pause, seek and speed from the app, applied to the player. After the end,
        a seek (or play: from the start) plays again."""
        from foxglove.websocket import PlaybackCommand

        player = self.player
        speed = float(request.playback_speed)
        if speed == speed and speed > 0:          # NaN or 0: leave the rate as it is
            player.set_rate(min(max(speed, MIN_RATE), MAX_RATE))
        play = request.playback_command == PlaybackCommand.Play
        seek = request.seek_time
        at: int | None = None
        with self._cond:
            self._controlled = True
            if seek is None and play and self._ended:
                seek = self.time_range[0]         # play after the end: from the start
            if seek is not None:
                lo, hi = self.time_range
                at = min(max(int(seek), lo), hi)
                player.seek(position_of(self.timeline, at) / NS)
            if play:
                player.resume()
            else:
                player.pause()
            if not self._started:
                # the player runs only from a play on (it then starts on the seek, if any;
                # a player started paused lets its position run on while it starts reading)
                if at is not None:
                    self._ended = False
                    self._pending_at = at
                if play:
                    self._started = True
                    self._cond.notify_all()
                elif at is not None:             # paused there: its latched topics, once
                    threading.Timer(LATCHED_AFTER_S, self.publisher.send_latched, (at,)).start()
        return self.state(did_seek=request.seek_time is not None, request_id=request.request_id,
                          at_ns=at)

    def subscribed(self, topic: str) -> None:
        with self._cond:
            self._subscribers += 1
            first = self._subscribers == 1
        if topic == ROBOT_DESCRIPTION_TOPIC:
            self.publisher.send_latched(self.current_time())
        if first and self.autoplay and not self._controlled:
            with self._cond:
                self._started = not self._ended
                self._cond.notify_all()
            self._broadcast()

    def unsubscribed(self) -> None:
        with self._cond:
            self._subscribers = max(0, self._subscribers - 1)


def _listener(replay: FoxgloveReplay) -> Any:
    """The SDK's callbacks (its ``ServerListener``, which has a default for each), handed
    to ``replay``."""
    from foxglove.websocket import ServerListener

    seen: set[int] = set()

    class Listener(ServerListener):
        def on_subscribe(self, client: Client, channel: ChannelView) -> None:
            if client.id not in seen:       # a new client: its connection without Nagle
                seen.add(client.id)
                no_delay(replay.port)
            replay.subscribed(channel.topic)

        def on_unsubscribe(self, client: Client, channel: ChannelView) -> None:
            replay.unsubscribed()

        def on_playback_control_request(self, request: PlaybackControlRequest) -> PlaybackState:
            return replay.control(request)

    return Listener()


def foxglove_publisher(host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                       **_: Any) -> FoxglovePublisher:
    """The registry's ``foxglove`` backend (``make_publisher("foxglove", port=...)``): play
    with :class:`FoxglovePlayer` after :meth:`FoxglovePublisher.serve`, or let
    :class:`FoxgloveReplay` do both (and the playback control)."""
    return FoxglovePublisher(host=host, port=port)

