"""SDP offer/answer signalling for ``sdp-offer`` transports: request models and the offer check.

An offer is parsed with aiortc's SDP parser before anything is started: it
must describe at least one media section with ICE credentials and a DTLS
fingerprint, so junk (``{"sdp": "x"}``) is refused with 400 and never gets
a peer connection, a session slot or a decoder.
"""

from typing import Literal

from pydantic import BaseModel, Field

#: Largest SDP accepted (a browser's offer is a few KiB).
MAX_SDP_CHARS = 64 * 1024


class Offer(BaseModel):
    """An SDP offer as pipecat's SmallWebRTC clients post it (``pc_id``/``restart_pc`` renegotiate)."""

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    type: Literal["offer"]
    pc_id: str | None = Field(None, max_length=200)
    restart_pc: bool | None = None


class Answer(BaseModel):
    """The server's SDP answer; ``pc_id`` names the peer connection for ICE patches and renegotiation."""

    sdp: str
    type: str
    pc_id: str


class Candidate(BaseModel):
    """One trickled ICE candidate (an empty ``candidate`` marks the end of candidates)."""

    candidate: str = Field(max_length=2000)
    sdp_mid: str = Field(max_length=200)
    sdp_mline_index: int = Field(ge=0, le=64)


class CandidatePatch(BaseModel):
    """ICE candidates for the peer connection ``pc_id``."""

    pc_id: str = Field(max_length=200)
    candidates: list[Candidate] = Field(max_length=100)


class BadOffer(ValueError):
    """The offer is not a usable SDP offer."""


def check_offer_sdp(sdp: str) -> None:
    """Parses ``sdp`` with aiortc's parser and checks it can start a peer connection.

    Raises:
        BadOffer: It does not parse, has no media section, or lacks ICE
            credentials or a DTLS fingerprint; the message says which.
    """
    from aiortc.sdp import SessionDescription

    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as e:  # the parser raises ValueError, IndexError, KeyError... on junk
        raise BadOffer(f"the offer's SDP does not parse ({e.__class__.__name__})") from e
    if not parsed.media:
        raise BadOffer("the offer's SDP has no media section")
    for media in parsed.media:
        ice = media.ice
        if ice is None or not ice.usernameFragment or not ice.password:
            raise BadOffer(f"the offer's {media.kind} section has no ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadOffer(f"the offer's {media.kind} section has no DTLS fingerprint")
