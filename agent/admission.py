"""Admission (pure): can this device provide what a module asks for?

A module the device cannot provide (its runtime, its CPU cores or memory, a required accelerator)
is Unschedulable with the reason, and the planner neither fetches, starts nor stops anything for
it: whatever runs for that module keeps running. No I/O here: the daemon describes the device
(``DeviceOffer``) and ``admit`` decides.

Memory is committed: the modules of one desired state are admitted in startup order and each
admitted one's ``memoryInGB`` counts against the device's physical memory, so the one that would
overcommit it is refused (not a random one). CPU is not summed: CPU limits share time (quotas,
affinity) and oversubscribing them slows modules down but breaks none, while memory does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edgefleet.protocol.models import DeviceCapabilities, ModuleSpec, ModuleState, Resources

BYTES_PER_GB = 1024**3  # memoryInGB is read as GiB, here and in the limits applied to processes
ALWAYS_AVAILABLE = frozenset({"cpu"})  # onnxruntime CPU is the guarantee of completeness: never discovered


def memory_bytes(resources: Resources) -> int | None:
    """``memoryInGB`` in bytes (None: no memory requested)."""
    return None if resources.memory_gb is None else math.ceil(resources.memory_gb * BYTES_PER_GB)


@dataclass(frozen=True)
class DeviceOffer:
    """What the device has. 0 means unknown (that check is skipped); ``accelerators`` None means
    discovery has not finished yet."""

    cpu_count: int = 0
    memory_bytes: int = 0
    accelerators: frozenset[str] | None = frozenset()

    @classmethod
    def from_capabilities(cls, caps: DeviceCapabilities, *, discovered: bool) -> DeviceOffer:
        return cls(
            cpu_count=caps.cpu_count,
            memory_bytes=caps.memory_bytes,
            accelerators=frozenset(a.kind for a in caps.accelerators) if discovered else None,
        )


@dataclass(frozen=True)
class Refusal:
    """Why a module is not started now: UNSCHEDULABLE (the device cannot provide it) or
    TRANSITIONING (cannot tell yet: accelerator discovery still running)."""

    state: ModuleState
    reason: str


def admit(specs: Iterable[ModuleSpec], runtimes: frozenset[str], offer: DeviceOffer) -> Mapping[str, Refusal]:
    """The modules of one desired state that must not be started, by name.

    ``specs`` in startup order: earlier modules get the memory first.
    """
    refused: dict[str, Refusal] = {}
    committed = 0
    for spec in specs:
        reason = _cannot_provide(spec, runtimes, offer, committed)
        if reason is not None:
            refused[spec.name] = Refusal(ModuleState.UNSCHEDULABLE, reason)
        elif _waits_for_discovery(spec, offer):
            refused[spec.name] = Refusal(
                ModuleState.TRANSITIONING,
                f"waiting for accelerator discovery: module {spec.name} requires one of "
                f"{', '.join(spec.accelerator.prefer)}",
            )
        else:
            committed += memory_bytes(spec.resources) or 0
    return refused


def _cannot_provide(spec: ModuleSpec, runtimes: frozenset[str], offer: DeviceOffer, committed: int) -> str | None:
    if spec.runtime not in runtimes:
        return f"runtime {spec.runtime!r} is not available on this device (it has: {', '.join(sorted(runtimes))})"
    cpu = spec.resources.cpu
    if cpu is not None and offer.cpu_count and cpu > offer.cpu_count:
        return f"resources.cpu asks for {cpu:g} cores; this device has {offer.cpu_count}"
    memory = memory_bytes(spec.resources)
    if memory is not None and offer.memory_bytes:
        if memory > offer.memory_bytes:
            return f"resources.memoryInGB asks for {_gb(memory)}; this device has {_gb(offer.memory_bytes)}"
        if committed + memory > offer.memory_bytes:
            return (
                f"resources.memoryInGB asks for {_gb(memory)}, but modules earlier in startup order already "
                f"commit {_gb(committed)} of this device's {_gb(offer.memory_bytes)}"
            )
    if spec.accelerator.required and offer.accelerators is not None:
        usable = set(spec.accelerator.prefer) & (offer.accelerators | ALWAYS_AVAILABLE)
        if not usable:
            found = ", ".join(sorted(offer.accelerators)) or "none"
            return (
                f"accelerator.required: none of {', '.join(spec.accelerator.prefer)} was discovered on this "
                f"device (found: {found}); allow a fall-back (required: false, or add cpu to prefer) or "
                "target a device that has one"
            )
    return None


def _waits_for_discovery(spec: ModuleSpec, offer: DeviceOffer) -> bool:
    return (
        offer.accelerators is None and spec.accelerator.required and not set(spec.accelerator.prefer) & ALWAYS_AVAILABLE
    )


def _gb(n: int) -> str:
    return f"{n / BYTES_PER_GB:.3g} GB"
