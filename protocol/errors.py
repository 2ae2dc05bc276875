"""Errors of the wire contract.

    ProtocolError                 anything that crossed the wire and cannot be accepted
    ├── ManifestRejected          a desired-state message the agent must not apply
    │   ├── SignatureInvalid      signature missing, malformed, or made with another key
    │   └── StaleGeneration       generation not greater than the last one accepted (replay/rollback)
    └── MethodRejected            a direct-method call the agent must not run; ``status`` is its answer
        ├── MethodUnauthenticated 401: not a signed call, signed with another key, or tampered with
        ├── MethodNotForDevice    403: signed for another device
        ├── MethodExpired         403: past its expiry, or issued in the future beyond the clock skew
        └── ReplayedSequence      403: sequence not greater than the last call run (replay)

Malformed payloads surface as ``ManifestRejected`` (or ``MethodRejected``, status 400 once signed)
too, with pydantic's field errors in the message. Verification raises nothing else: whatever
arrives, a caller that catches these has caught everything (tests/unit/fuzz keeps that true).
"""


class ProtocolError(Exception):
    """Something that crossed the wire cannot be accepted."""


class ManifestRejected(ProtocolError):
    """A desired-state message that the agent must not apply; running modules stay as they are."""


class SignatureInvalid(ManifestRejected):
    """The manifest's signature does not verify against the pinned hub key."""


class StaleGeneration(ManifestRejected):
    """The manifest's generation is not greater than the last accepted one."""

    def __init__(self, generation: int, last_accepted: int) -> None:
        super().__init__(
            f"manifest generation {generation} is not greater than the last accepted generation "
            f"{last_accepted}; ignored (replay or rollback protection)"
        )
        self.generation = generation
        self.last_accepted = last_accepted


class MethodRejected(ProtocolError):
    """A direct-method call the agent must not run. ``status`` is the HTTP-like code it answers with."""

    status = 400


class MethodUnauthenticated(MethodRejected):
    """Not a signed call, or its signature does not verify against the pinned hub key."""

    status = 401


class MethodNotForDevice(MethodRejected):
    """A genuine call, signed for another device (copied onto this device's topic)."""

    status = 403


class MethodExpired(MethodRejected):
    """Outside its validity window (expired, or issued in the future) beyond the allowed clock skew."""

    status = 403


class ReplayedSequence(MethodRejected):
    """The call's sequence number is not greater than the last one this device ran."""

    status = 403

    def __init__(self, sequence: int, last_accepted: int) -> None:
        super().__init__(
            f"direct-method sequence {sequence} is not greater than the last one run, {last_accepted}; not run "
            "(replay protection; a hub whose clock went back is refused until it passes that number)"
        )
        self.sequence = sequence
        self.last_accepted = last_accepted
