"""Pure decisions about generations: must a device get a new manifest, and with which generation?
And is a device's report of its generation to be believed at all?"""

from __future__ import annotations

from typing import Any

from edgefleet.protocol.models import MAX_GENERATION


def report_refused(issued_generation: int | None, heard_before: bool, reported_generation: int) -> bool:
    """True when a report claims a generation past the last one the hub issued, and the hub knows better.

    Once the hub has issued a generation to a device and believed a report of it (``heard_before``),
    the device's generation moves only through manifests the hub signs: a claim past the last one
    issued is forged (anyone who can publish on the device's reported topic of a broker without
    ACLs), or the hub's database was restored from an older backup. Believed, it would make the
    hub sign past it (``next_generation``), up to the cap.

    Before that the hub knows nothing better, and a device ahead of it is the recovery path: the
    hub lost its database, or the device ran under another hub; it may even have been issued a
    manifest blind, at registration, before its first report. Then the hub publishes past what it
    reports, since the device refuses anything at or below the last generation it accepted.
    """
    return issued_generation is not None and heard_before and reported_generation > issued_generation


def next_generation(
    published_generation: int | None,
    published_modules: list[dict[str, Any]] | None,
    rendered_modules: list[dict[str, Any]],
    reported_generation: int,
    resign: bool = False,
) -> int | None:
    """The generation to publish, or None when the device already has what it should.

    - nothing published and nothing to run: None (no empty manifest for idle devices)
    - same modules as published, and the device is not ahead of us: None (no churn on re-render)
    - otherwise one past both what we published and what the device reports, because a device
      refuses any generation at or below the last it accepted (e.g. after the hub lost its database;
      a report that may not be believed never gets here: ``report_refused``)
    - ``resign`` (the signing key or the key it announces changed: a key rotation): a new generation
      even when the modules did not change, also an empty one for an idle device
    - but never past ``MAX_GENERATION``: a device at the cap (a real one after 2**53 updates, or one
      reporting a made-up number) gets None, never a manifest no device could accept
    """
    generation = max(published_generation or 0, reported_generation) + 1
    if generation > MAX_GENERATION:
        return None
    if resign:
        return generation
    if published_generation is None and not rendered_modules:
        return None
    if (
        published_generation is not None
        and published_modules == rendered_modules
        and reported_generation <= published_generation
    ):
        return None
    return generation
