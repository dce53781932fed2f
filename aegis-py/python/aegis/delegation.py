"""Delegation for multi-agent systems: each sub-agent acts on a credential minted for it.

When a supervisor (an agent holding a credential chain and the private key its leaf binds)
passes work to a sub-agent, the sub-agent must not act on the supervisor's own chain: Aegis would
then attest the supervisor as the performer, and segregation of duties could not tell the two
apart. A :class:`Delegator` mints, for each sub-agent, a delegation from the supervisor's leaf to
a fresh key of the sub-agent, scoped to that sub-agent's tools (never wider than the
supervisor's scope), and appends it to the supervisor's chain. A sub-agent that passes work on
in turn must be delegated the tools of the agents below it too (each delegation is narrowed from
the one above it): :mod:`aegis.openai_agents` scopes a handoff's delegation to the tools of the
agent and of every agent it hands off to. The engine then decides the
sub-agent's calls on the longer chain: its attested id is namespaced under the supervisor's
(`planner/finance-agent`), and every SoD rule on lineage, delegators and keys holds across the
whole chain.

This module is framework-neutral; :mod:`aegis.openai_agents` (handoffs) and
:mod:`aegis.langchain` (LangGraph supervisors) use it. It needs nothing beyond ``aegis-sod``.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from . import KeyPair, delegate, inspect, inspect_chain
from ._errors import MalformedRequest

__all__ = ["Delegator"]

#: A minted delegation is replaced this many seconds before it expires, so that a call decided
#: right after minting never meets an expired credential.
RENEW_MARGIN_SECS = 30

def _claims(token: str) -> Dict[str, object]:
    claims = inspect(token)["claims"]
    if not isinstance(claims, dict):
        raise MalformedRequest("a credential without claims", "malformed_request")
    return claims


class Delegator:
    """An agent that passes work to sub-agents: its credential `chain`, the private `key` that
    chain's leaf binds, and the delegations it minted, one per sub-agent name.

    :meth:`child` mints (once, then from a cache) the sub-agent's delegation: issued by the leaf
    of `chain`, to a fresh key of the sub-agent, scoped to the sub-agent's tools that this
    agent's own scope covers (a tool it does not cover is left out, so the sub-agent's calls of
    it are denied `tool_not_in_scope`, rather than the whole chain being refused), expiring no
    later than this agent's credential. The result is the sub-agent's own :class:`Delegator`,
    so sub-agents can delegate in turn. Safe to share between threads.

    `ttl_secs` caps each minted delegation's lifetime; it is minted again (same key) when near
    expiry, or when this agent's own chain was renewed. `key_factory` makes a sub-agent's key
    from its attested id (default: a fresh random key). `clock` gives the issue time in Unix
    seconds (default: the system clock; pass the engine's time when it runs on a fixed one).
    """

    def __init__(
        self, chain: Sequence[str], key: KeyPair, *, ttl_secs: int = 600,
        key_factory: Optional[Callable[[str], KeyPair]] = None, clock: Optional[Callable[[], int]] = None,
    ) -> None:
        if isinstance(chain, str) or not chain:
            raise TypeError("`chain` is a non-empty sequence of credentials, not one string")
        if ttl_secs <= 0:
            raise ValueError("`ttl_secs` must be positive")
        self._chain: Tuple[str, ...] = tuple(chain)
        self._key = key
        self._ttl_secs = ttl_secs
        self._key_factory: Callable[[str], KeyPair] = key_factory or (lambda _agent_id: KeyPair.generate())
        self._clock: Callable[[], int] = clock or (lambda: int(time.time()))
        self._children: Dict[str, "Delegator"] = {}
        self._lock = threading.RLock()
        # Set on a sub-agent's delegator: who delegates to it, under which name, for which
        # tools, and the delegation last minted (the leaf it names, when it expires).
        self._parent: Optional["Delegator"] = None
        self._name = ""
        self._tools: Tuple[str, ...] = ()
        self._parent_leaf = ""
        self._expires_at = 0

    # --- what this agent holds ---------------------------------------------------------------

    @property
    def chain(self) -> List[str]:
        """The credential chain this agent presents (a sub-agent's is minted or renewed here)."""
        with self._lock:
            if self._parent is not None:
                self._renew_if_needed()
            return list(self._chain)

    @property
    def key(self) -> KeyPair:
        """The private key the leaf of :attr:`chain` binds."""
        return self._key

    @property
    def scope(self) -> Tuple[str, ...]:
        """The scope of the leaf credential, as it reads (the engine verifies it)."""
        scope = _claims(self.chain[-1]).get("scope")
        return tuple(str(s) for s in scope) if isinstance(scope, list) else ()

    @property
    def agent_id(self) -> str:
        """The id Aegis attests for this agent: the ids along the chain, joined by `/`
        (`planner/finance-agent`)."""
        return inspect_chain(self.chain).agent_id

    def _agent_id_unminted(self) -> str:
        """:attr:`agent_id` without minting: a sub-agent's id follows from its delegator's."""
        if self._parent is None:
            return self.agent_id
        return f"{self._parent._agent_id_unminted()}/{self._name}"

    @property
    def name(self) -> str:
        """The name this agent was delegated under (empty for the agent holding the root)."""
        return self._name

    # --- sub-agents --------------------------------------------------------------------------

    def child(self, name: str, tools: Iterable[str]) -> "Delegator":
        """The delegator of sub-agent `name`, whose tools are `tools` (Aegis tool names: its own,
        and those of the sub-agents it will delegate to in turn, which it can pass on only if it
        holds them).

        Its delegation is minted when its :attr:`chain` is first read (at the handoff, or at its
        first tool call), then cached and renewed. Asking again for the same name with other
        tools raises `ValueError` (a sub-agent's scope is fixed). `name` may not contain `/`
        (the engine namespaces delegates with it)."""
        if not name or "/" in name:
            raise ValueError(f"a sub-agent name is non-empty and has no `/`: {name!r}")
        if isinstance(tools, str):
            raise TypeError("`tools` is a sequence of tool names, not one string")
        wanted = tuple(dict.fromkeys(tools))
        with self._lock:
            sub = self._children.get(name)
            if sub is None:
                sub = Delegator(self._chain, self._key_factory(f"{self._agent_id_unminted()}/{name}"),
                                ttl_secs=self._ttl_secs, key_factory=self._key_factory, clock=self._clock)
                sub._parent, sub._name, sub._tools = self, name, wanted
                self._children[name] = sub
            elif set(sub._tools) != set(wanted):
                raise ValueError(f"sub-agent {name!r} was delegated tools {list(sub._tools)}, not {list(wanted)}")
            return sub

    def chain_for(self, name: str, tools: Iterable[str]) -> List[str]:
        """The chain sub-agent `name` presents: :meth:`child` ``(name, tools).chain``."""
        return self.child(name, tools).chain

    def children(self) -> Dict[str, "Delegator"]:
        """The sub-agents delegated to so far, by name."""
        with self._lock:
            return dict(self._children)

    def _renew_if_needed(self) -> None:
        """Mints this sub-agent's delegation when it has none, when it is near expiry, or when
        the delegator's own chain was renewed (the delegation names its parent's digest)."""
        parent = self._parent
        if parent is None:
            return
        with self._lock:
            parent_chain = parent.chain
            now = self._clock()
            if parent_chain[-1] == self._parent_leaf and now < self._expires_at - RENEW_MARGIN_SECS:
                return
            # The core narrows it to what the delegator holds (`narrow`): the sub-agent's tools its
            # scope covers, ending no later than its credential. A wider scope would get the
            # whole chain refused (`scope_widened`); this way only the uncovered tools are denied.
            # A delegator whose credential has expired gets `credential_expired`.
            link = delegate(parent_chain[-1], parent.key, self._name, self._key, scope=list(self._tools),
                            ttl_secs=self._ttl_secs, issued_at=now, narrow=True)
            exp = _claims(link).get("exp")
            self._chain = (*parent_chain, link)
            self._parent_leaf = parent_chain[-1]
            self._expires_at = int(exp) if isinstance(exp, int) else now

    def __repr__(self) -> str:
        return f"Delegator(agent_id={self._agent_id_unminted()!r}, children={sorted(self._children)!r})"
