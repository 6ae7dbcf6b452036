"""Enqueues published from the caller's own thread, over plain blocking AMQP sockets.

``add`` on the storage's loop thread costs two thread switches per call (the
hand-off and the wake-up of the waiting caller) plus aiormq's per-message
tasks and futures; on a busy machine each switch can take milliseconds. Here
the caller borrows one of a few pooled connections, each with one confirming
channel spoken to synchronously (frames built and read here and by pamqp): a
publish is one ``sendall`` of its frames, then reading until the broker's
confirm. Dramatiq does the same with pika's ``BlockingConnection`` (one per
thread); a pool needs fewer connections: concurrent enqueues already share one
publish (group commit), so one or two connections serve any number of threads,
and a new request thread finds a warm connection instead of opening its own.

Durability is the loop thread's: persistent messages, ``mandatory``, and a
message counts as stored only once the broker acked it and did not return it.
Everything else (a nack, a return as unroutable, a closed channel or
connection, a timeout) is handed back to the caller, which publishes those
messages again through the loop thread's full path (reconnects, redeclares,
error reports) within what is left of ``publish_timeout``. A message whose
confirm was lost may so be stored twice: at-least-once, as on any reconnect.

These connections do not heartbeat (nothing runs between publishes; TCP
keepalive is on). A half-open one shows as a confirm that does not come: the
caller waits for it at most half of ``publish_timeout`` and the full path gets
the rest, so one ``add`` takes at most ``publish_timeout`` in all; the
connection is then dropped. A new connection is opened by a helper thread when
a publish finds none idle (one at a time, at most ``MAX_CONNECTIONS``, no
sooner than ``reconnect_interval`` after a failed connect); meanwhile that
publish takes the loop thread's path, so nobody waits for a handshake. The
storage's first ``WARM_UP`` publishes open none: a script that enqueues once
does not open a second connection. All close with the storage. ``amqps://``
URLs always take the loop thread's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from pamqp import commands as spec
from pamqp import frame as amqp_frame
from pamqp import header as amqp_header
from pamqp.heartbeat import Heartbeat
from yarl import URL

log = logging.getLogger("oddjob.rabbitmq")

WARM_UP = 2  # publishes that take the loop thread before the first producer connection opens
MAX_CONNECTIONS = 4  # producer connections at most (group commit makes one publish at a time)
MAX_BYTES = 1 << 20  # bodies per call published here; a blocking sendall reads nothing meanwhile
_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_CHANNEL = 1
_END = b"\xce"
_CONTENT = struct.Struct(">HHQH")  # class (basic), weight, body size, property flags
_CONFIRM = struct.Struct(">IQB")  # method (class << 16 | id), delivery tag, bits
_ACK, _NACK = 0x003C0050, 0x003C0078
#: the properties ``add`` sets (content_type, delivery_mode, message_id): encoded here
_PLAIN_FLAGS = 0x8000 | 0x1000 | 0x0080
_OTHER_PROPERTIES = (
    "content_encoding",
    "headers",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "timestamp",
    "message_type",
    "user_id",
    "app_id",
    "cluster_id",
)


class _Confirm(NamedTuple):
    """A ``basic.ack`` or ``basic.nack`` (read without pamqp: one per publish)."""

    tag: int
    multiple: bool
    ack: bool


#: what pamqp leaves out of a content header (``Basic.Properties`` sets ``cluster_id=""``)
_UNSET = (None, "")


def content_header(channel: int, body_size: int, props: spec.Basic.Properties) -> bytes:
    """The content header frame (as pamqp marshals it; the usual properties encoded directly)."""
    if (
        props.content_type
        and props.message_id
        and props.delivery_mode is not None
        and all(getattr(props, name) in _UNSET for name in _OTHER_PROPERTIES)
    ):
        ct, mid = props.content_type.encode(), props.message_id.encode()
        payload = b"".join(
            (
                _CONTENT.pack(60, 0, body_size, _PLAIN_FLAGS),
                bytes((len(ct),)),
                ct,
                bytes((props.delivery_mode,)),
                bytes((len(mid),)),
                mid,
            )
        )
        return b"".join((_HEAD.pack(2, channel, len(payload)), payload, _END))
    return amqp_frame.marshal(amqp_header.ContentHeader(0, body_size, props), channel)


class Message(Protocol):
    """What is published: ``Out`` of the storage (``job_id`` is its ``message_id``)."""

    @property
    def exchange(self) -> str: ...
    @property
    def routing_key(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def properties(self) -> spec.Basic.Properties: ...
    @property
    def job_id(self) -> str: ...


M = TypeVar("M", bound=Message)


class WireError(Exception):
    """The connection or channel is unusable (closed by the broker, lost, timed out)."""


class Wire:
    """One blocking AMQP 0-9-1 connection with channel 1 in confirm mode (one thread at a time)."""

    def __init__(self, url: URL, timeout: float, name: str) -> None:
        self._url = url
        self._frame_max = 131072
        self._buffer = bytearray()
        self._tag = 0  # delivery tags of channel 1 so far
        self._methods: dict[tuple[str, str], bytes] = {}  # basic.publish frames, marshalled
        deadline = time.monotonic() + timeout
        self._sock = socket.create_connection((url.host, url.port or 5672), timeout)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self._handshake(deadline, name)
        except BaseException:
            self._sock.close()
            raise

    def _handshake(self, deadline: float, name: str) -> None:
        self._sock.sendall(amqp_frame.marshal(amqp_header.ProtocolHeader(), 0))
        self._expect(spec.Connection.Start, deadline)
        user, password = self._url.user or "guest", self._url.password or "guest"
        self._send(
            spec.Connection.StartOk(
                client_properties={
                    "connection_name": name,
                    "product": "oddjob-rabbitmq",
                    "capabilities": {"publisher_confirms": True, "connection.blocked": True},
                },
                mechanism="PLAIN",
                response=f"\0{user}\0{password}",
            )
        )
        tune = self._expect(spec.Connection.Tune, deadline)
        self._frame_max = tune.frame_max or self._frame_max
        self._send(
            spec.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=self._frame_max, heartbeat=0
            )
        )
        path = self._url.raw_path
        vhost = "/" if path in ("", "/") else path[1:].replace("%2F", "/")
        self._send(spec.Connection.Open(virtual_host=vhost))
        self._expect(spec.Connection.OpenOk, deadline)
        self._send(spec.Channel.Open(), _CHANNEL)
        self._expect(spec.Channel.OpenOk, deadline)
        self._send(spec.Confirm.Select(), _CHANNEL)
        self._expect(spec.Confirm.SelectOk, deadline)

    def _send(self, value: Any, channel: int = 0) -> None:
        self._sock.sendall(amqp_frame.marshal(value, channel))

    def _expect(self, kind: type[Any], deadline: float) -> Any:
        value = self._next(deadline)
        if not isinstance(value, kind):
            raise WireError(f"expected {kind.__name__}, got {_describe(value)}")
        return value

    def _next(self, deadline: float) -> Any:
        """The next frame of interest (channel or connection closes raise ``WireError``)."""
        while True:
            buffer = self._buffer
            while len(buffer) < 7 or len(buffer) < _HEAD.unpack_from(buffer)[2] + 8:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WireError("no answer from the broker in time")
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise WireError("the broker closed the connection")
                buffer += chunk
            size = _HEAD.unpack_from(buffer)[2] + 8
            if size == 21 and buffer[0] == 1:  # 13 bytes of method: a confirm?
                method, tag, bits = _CONFIRM.unpack_from(buffer, 7)
                if method in (_ACK, _NACK):
                    del buffer[:size]
                    return _Confirm(tag, bool(bits & 1), method == _ACK)
            _, channel, value = amqp_frame.unmarshal(bytes(buffer[:size]))
            del buffer[:size]
            if isinstance(value, spec.Connection.Close):
                with contextlib.suppress(OSError):
                    self._send(spec.Connection.CloseOk())
                raise WireError(_describe(value))
            if isinstance(value, spec.Channel.Close):
                with contextlib.suppress(OSError):
                    self._send(spec.Channel.CloseOk(), channel)
                raise WireError(_describe(value))
            if isinstance(value, Heartbeat | spec.Connection.Blocked | spec.Connection.Unblocked):
                continue  # a blocked broker confirms late: the deadline bounds the wait
            return value

    def publish(self, outs: Sequence[M], timeout: float) -> tuple[list[M], WireError | None]:
        """Publish ``outs`` (persistent as given, ``mandatory``) and wait for every confirm.

        Returns the messages not stored (nacked, returned, or unconfirmed when
        the wire failed) and the failure, if any; the wire is unusable after one.
        """
        first = self._tag + 1
        chunk = self._frame_max - 8
        data = bytearray()
        methods = self._methods
        for o in outs:
            method = methods.get((o.exchange, o.routing_key))
            if method is None:
                if len(methods) > 1000:
                    methods.clear()
                method = methods[o.exchange, o.routing_key] = amqp_frame.marshal(
                    spec.Basic.Publish(
                        exchange=o.exchange, routing_key=o.routing_key, mandatory=True
                    ),
                    _CHANNEL,
                )
            data += method
            body = o.body
            data += content_header(_CHANNEL, len(body), o.properties)
            for start in range(0, len(body), chunk):
                piece = body[start : start + chunk]
                data += _HEAD.pack(3, _CHANNEL, len(piece))
                data += piece
                data += _END
        self._tag += len(outs)
        stored = [False] * len(outs)
        open_ = set(range(len(outs)))
        returned: set[str] = set()
        deadline = time.monotonic() + timeout
        error: WireError | None = None
        try:
            self._sock.settimeout(max(0.001, timeout))
            self._sock.sendall(data)
            while open_:
                value = self._next(deadline)
                if isinstance(value, spec.Basic.Return):
                    header = self._next(deadline)  # its content: the message_id names the job
                    received = 0
                    while received < header.body_size:
                        received += len(self._next(deadline).value)
                    returned.add(str(header.properties.message_id))
                    continue
                if not isinstance(value, _Confirm):
                    continue
                last = value.tag - first
                done = range(last + 1) if value.multiple else (last,)
                for i in done:
                    if i in open_:
                        open_.discard(i)
                        stored[i] = value.ack
        except Exception as exc:  # lost, closed, timed out, or a frame we cannot read
            error = exc if isinstance(exc, WireError) else WireError(str(exc) or type(exc).__name__)
        left = [o for o, ok in zip(outs, stored, strict=True) if not ok or o.job_id in returned]
        return left, error

    def shutdown(self) -> None:
        """Wake a thread blocked on this wire (from another thread)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close politely (best effort, briefly), then the socket."""
        try:
            self._sock.settimeout(1.0)
            self._send(spec.Connection.Close(200, "closed", 0, 0))
            deadline = time.monotonic() + 1.0
            while not isinstance(self._next(deadline), spec.Connection.CloseOk):
                pass
        except Exception as exc:  # closing anyway
            log.debug("closing a producer connection: %s", exc)
        finally:
            self._sock.close()


def _describe(value: Any) -> str:
    if isinstance(value, spec.Connection.Close | spec.Channel.Close):
        return f"{value.name}: {value.reply_code} {value.reply_text}"
    return getattr(value, "name", type(value).__name__)


class CallerPublisher:
    """Publishes from the calling thread over a small pool of blocking connections (thread-safe).

    A caller borrows an idle connection for one publish and gives it back; none is
    tied to a thread, so a web server's short-lived request threads reuse the same
    few connections, and a group commit's next leader finds a warm connection.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        publish_timeout: float,
        retry_interval: float,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        parsed = URL(url)
        self._url = parsed
        self._usable = parsed.scheme == "amqp"  # TLS: the loop thread's connection only
        self._connect_timeout = connect_timeout
        self._confirm_timeout = publish_timeout / 2  # the full path gets the rest
        self._retry_interval = max(0.1, retry_interval)
        self._max = max(1, max_connections)
        self._cond = threading.Condition()  # guards everything below
        self._idle: list[Wire] = []
        self._busy: set[Wire] = set()
        self._connecting = False  # a helper thread is opening a connection
        self._retry_at = 0.0  # after a failed connect: no new try before this
        self._calls = 0  # publishes asked for (the first WARM_UP never connect)
        self._closed = False
        self.connections = 0  # connections opened (for tests)

    def publish(self, outs: Sequence[M]) -> list[M]:
        """Publish ``outs`` here; return those not stored (all of them when it cannot try)."""
        if self._closed or not self._usable or _loop_running():
            return list(outs)
        if sum(len(o.body) for o in outs) > MAX_BYTES:
            return list(outs)  # big batches: the loop thread reads confirms while it writes
        wire = self._borrow()
        if wire is None:
            return list(outs)
        try:
            left, error = wire.publish(outs, self._confirm_timeout)
        except Exception as exc:  # a message pamqp cannot encode: the full path says why
            left, error = list(outs), WireError(str(exc))
        if error is not None:
            log.debug(
                "publishing from thread %s failed: %s", threading.current_thread().name, error
            )
        self._give_back(wire, keep=error is None)
        return left

    def _borrow(self) -> Wire | None:
        """An idle connection, or None (and maybe a connect started in the background)."""
        with self._cond:
            if self._closed:
                return None
            if self._idle:
                wire = self._idle.pop()
                self._busy.add(wire)
                return wire
            self._calls += 1
            if (
                self._calls > WARM_UP
                and not self._connecting
                and len(self._busy) < self._max
                and time.monotonic() >= self._retry_at
            ):
                self._connecting = True
                threading.Thread(
                    target=self._connect,
                    name="oddjob-rabbitmq-connect",
                    daemon=True,  # exiting never waits for a handshake
                ).start()
        return None

    def _give_back(self, wire: Wire, *, keep: bool) -> None:
        with self._cond:
            self._busy.discard(wire)
            keep = keep and not self._closed
            if keep:
                self._idle.append(wire)
            self._cond.notify_all()
        if not keep:
            wire.close()

    def _connect(self) -> None:
        """Open one more connection off the callers' threads: nobody waits for a handshake."""
        try:
            wire: Wire | None = Wire(self._url, self._connect_timeout, "oddjob-rabbitmq-producer")
        except Exception as exc:  # refused, timed out, a handshake we cannot read: retry later
            log.debug("connecting a producer connection failed: %s", exc)
            wire = None
        with self._cond:
            self._connecting = False
            if wire is None:
                self._retry_at = time.monotonic() + self._retry_interval
                return
            if not self._closed:
                self._idle.append(wire)
                self.connections += 1
                return
        wire.close()

    def open_connections(self) -> int:
        """Connections open now, idle or publishing."""
        with self._cond:
            return len(self._idle) + len(self._busy)

    def close(self) -> None:
        """Close every connection; a publish under way gets 5 s, then is woken and fails over."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.wait_for(lambda: not self._busy, 5)
            busy = list(self._busy)
        for wire in busy:
            wire.shutdown()  # its publish fails and goes to the loop thread; it closes it
        for wire in idle:
            wire.close()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
