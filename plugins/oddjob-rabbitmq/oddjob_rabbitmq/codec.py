"""Message bodies: the job envelope as JSON (readable in the management UI) or msgpack."""

from __future__ import annotations

import msgspec

from oddjob_core.model import Envelope
from oddjob_core.poison import CorruptJob, describe

JSON = "application/json"
MSGPACK = "application/msgpack"

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_json_decoder = msgspec.json.Decoder(Envelope)
_msgpack_decoder = msgspec.msgpack.Decoder(Envelope)


class Codec:
    """Encodes new messages in the configured format; decodes by the message's content type."""

    def __init__(self, encoding: str) -> None:
        self.content_type = MSGPACK if encoding == "msgpack" else JSON
        self._encode = _msgpack_encoder.encode if encoding == "msgpack" else _json_encoder.encode

    def encode(self, envelope: Envelope) -> bytes:
        """The message body of ``envelope``."""
        return self._encode(envelope)

    @staticmethod
    def decode(body: bytes, content_type: str | None) -> Envelope:
        """The envelope in ``body``; ``CorruptJob`` (a ``PayloadError``) naming the problem if it is not one."""
        try:
            if content_type == MSGPACK:
                return _msgpack_decoder.decode(body)
            return _json_decoder.decode(body)
        except Exception as exc:  # msgspec errors, RecursionError (deep nesting), ...
            preview = body[:80]
            raise CorruptJob(
                f"message is not an oddjob job envelope ({content_type or 'no content type'}): "
                f"{describe(exc)}; body starts {preview!r}"
            ) from exc
