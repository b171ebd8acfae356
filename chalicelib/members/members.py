"""Members: one-to-one mapping of a channel's external member id to our member.

The link item and the member are created in one transaction guarded by
``attribute_not_exists``, so racing first entries of the same member create
exactly one member, and no member ever has two external ids.
"""
from __future__ import annotations

import uuid

from pynamodb.exceptions import DoesNotExist

from chalicelib.core.clock import now_iso
from chalicelib.core.errors import NotFound
from chalicelib.core.models import get_owned
from chalicelib.members.models import Member, MemberLink
from chalicelib.core.tx import AGAIN, Commit, Done, LabelledTransaction, retrying

ATTEMPTS = 8


def link_key(channel_code: str, external_id: str) -> str:
    return f"{channel_code}#{external_id}"


def _linked(channel_code: str, external_id: str) -> Member | None:
    try:
        link = MemberLink.get(link_key(channel_code, external_id), consistent_read=True)
    except DoesNotExist:
        return None
    return Member.get(link.member_id, consistent_read=True)


def enter(channel_code: str, external_id: str, nickname: str | None = None, mobile: str | None = None,
          remote_points: int | None = None) -> Member:
    """The member behind this external id, created on first entry; profile fields refresh on later ones."""

    def build(member: Member | None) -> Commit[Member] | Done[Member]:
        if member is not None:
            _refresh(member, nickname, mobile, remote_points)
            return Done(member)
        member = Member(f"U{uuid.uuid4().hex[:16].upper()}", channel_code=channel_code, external_id=external_id,
                        nickname=nickname, mobile=mobile, remote_points=remote_points)
        tx = LabelledTransaction()
        tx.put("link", MemberLink(link_key(channel_code, external_id), member_id=member.member_id),
               condition=MemberLink.link.does_not_exist())
        tx.put("member", member, condition=Member.member_id.does_not_exist())
        # Lost the race (or a transaction conflict with the winner): read the winner's link.
        return Commit(tx, lambda: member, refused=lambda _: AGAIN)

    def exhausted() -> Member:
        member = _linked(channel_code, external_id)
        if member is None:
            raise RuntimeError(f"could not map member {external_id} in {channel_code}")
        return member

    return retrying(lambda _: _linked(channel_code, external_id), build, ATTEMPTS, exhausted)


def _refresh(member: Member, nickname: str | None, mobile: str | None, remote_points: int | None) -> None:
    actions = [Member.last_entry_at.set(now_iso())]
    for attr, value in ((Member.nickname, nickname), (Member.mobile, mobile), (Member.remote_points, remote_points)):
        if value is not None and getattr(member, attr.attr_name) != value:
            actions.append(attr.set(value))
    member.update(actions)


def get(member_id: str, channel_code: str) -> Member:
    member = get_owned(Member, member_id, "channel_code", channel_code)
    if member is None:
        raise NotFound("member_not_found", "no such member")
    return member


def view(m: Member) -> dict:
    return {"member_id": m.member_id, "channel_code": m.channel_code, "external_id": m.external_id,
            "nickname": m.nickname, "mobile": m.mobile,
            "remote_points": int(m.remote_points) if m.remote_points is not None else None}
