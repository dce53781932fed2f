"""The native half of `aegis`: the core's one JSON operation table. Use the `aegis` package instead."""

from typing import Callable, Optional

from typing_extensions import final

__all__ = ["Engine", "NativeError", "call"]

class NativeError(Exception):
    """An error from the core; `args[0]` is its JSON (`{"code", "message", ...}`)."""

@final
class Engine:
    def __new__(cls, config: str, notifier: Optional[Callable[[str], None]] = None) -> "Engine": ...
    def call(self, op: str, input: str) -> str: ...

def call(op: str, input: str) -> str: ...
