"""The native half of `aegis`: the core's one JSON operation table. Use the `aegis` package instead."""

from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

from typing_extensions import final

__all__ = ["Engine", "NativeError", "call", "register"]

class NativeError(Exception):
    """An error from the core; `args[0]` is its JSON (`{"code", "message", ...}`)."""

@final
class Engine:
    def __new__(cls, config: str, notifier: Optional[Callable[[str], None]] = None) -> "Engine": ...
    def call(self, op: str, input: str) -> str: ...
    def authorize(self, chain: Sequence[str], tool: str, args: Mapping[str, Any],
                  resource: Optional[Tuple[str, str]], proof: Optional[str], approval_token: Optional[str],
                  traceparent: Optional[str], tool_call_id: Optional[str]) -> Any: ...
    def authorize_enforced(self, chain: Sequence[str], tool: str, args: Mapping[str, Any],
                           resource: Optional[Tuple[str, str]], proof: Optional[str], approval_token: Optional[str],
                           traceparent: Optional[str], tool_call_id: Optional[str]) -> Any: ...

def call(op: str, input: str) -> str: ...
def register(decision: type, reason: type, enforced: type, enforcement: type) -> None: ...
