"""Which LoRA adapters an engine holds (train.lora): the one it serves and the one before it, so the gate's
rollback is a change of route, not a load."""

from __future__ import annotations


class AdapterSlots:
    """Adapters by folder, most recently served last. Names are engine-local ("a0", "a1", …) and a folder keeps
    its name while it stays loaded; `number` is the positive integer id vLLM's LoRARequest wants."""

    def __init__(self, keep: int = 2):
        self.keep = max(1, keep)
        self.names: dict[str, str] = {}  # folder -> name
        self.active: str | None = None  # the name requests go to; None: the base model, every adapter off
        self._count = 0

    def admit(self, path: str) -> tuple[str, bool, list[str]]:
        """Make `path` the most recently served: its name, whether it is new (to be loaded), and the names to
        unload so that `keep` adapters remain (the previously served one among them)."""
        name = self.names.pop(path, None)
        new = name is None
        if name is None:
            name = f"a{self._count}"
            self._count += 1
        self.names[path] = name
        stale = list(self.names)[:-self.keep]
        return name, new, [self.names.pop(p) for p in stale]

    @staticmethod
    def number(name: str) -> int:
        return int(name[1:]) + 1
