"""What a member is told when its room refuses what it sent: never applied, never relayed.

A read-only member's change is told once (an error frame, or y-websocket's permission
message for a client without control frames); an invalid message gets an error frame.
Called from the room's task only.
"""

from __future__ import annotations

import logging
from typing import Any

from pycrdt import Doc

from ..protocol import InvalidUpdate
from ..protocol.messages import encode_permission_denied
from ..protocol.updates import EMPTY_UPDATE, adds_structs, decode_state_vector
from .fanout import send_error
from .member import Member

log = logging.getLogger("civicrealtime.room")


def reject(key: str, member: Member, detail: str) -> None:
    """An invalid message: logged, and the member told why."""
    log.info("message.invalid room=%s conn=%s detail=%s", key, member.conn_id, detail)
    send_error(member, "INVALID_MESSAGE", "message rejected: " + detail)


def refuse_viewer_update(
    key: str, member: Member, update: bytes, doc: Doc[Any], *, is_step2: bool
) -> None:
    """A read-only member's change is never applied nor relayed; it is told once.

    y-websocket answers our step 1 with a step 2 even when it has nothing new (it then
    carries only the delete set we sent): that is not an edit and gets no error.
    """
    if update == EMPTY_UPDATE:
        return
    try:
        doc_state = decode_state_vector(doc.get_state())
        attempt = not is_step2 or adds_structs(update, doc_state)
    except InvalidUpdate as exc:
        reject(key, member, str(exc))
        return
    if not attempt or member.told_read_only:
        return
    member.told_read_only = True
    log.info("edit.denied room=%s conn=%s user=%s", key, member.conn_id, member.identity.user_id)
    if member.control_frames:
        send_error(member, "PERMISSION_DENIED", "read-only access: changes are not saved")
    else:
        member.outbound.push(encode_permission_denied("read-only access"))
