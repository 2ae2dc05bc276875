"""Errors of the wire contract.

    ProtocolError                 anything that crossed the wire and cannot be accepted
    └── ManifestRejected          a desired-state message the agent must not apply
        ├── SignatureInvalid      signature missing, malformed, or made with another key
        └── StaleGeneration       generation not greater than the last one accepted (replay/rollback)

Malformed payloads surface as ``ManifestRejected`` too, with pydantic's field errors in the message.
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
