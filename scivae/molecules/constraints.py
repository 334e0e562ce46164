"""Decoding constraints: token masks that keep sampled sequences well formed.

A constraint is a small, batched state machine that the decoder consults at every step: ``start`` makes
the state for ``n`` sequences, ``allowed`` gives the tokens each sequence may emit next (a boolean
``(n, vocabulary)`` mask), and ``advance`` updates the state with the emitted tokens. Masked tokens get
probability zero and the others are renormalised, so a constraint only removes strings that could never
be a molecule; it never invents a token the model did not propose.

* :class:`AtomFirst`: ``<eos>`` only after at least one atom (no empty molecule). Used for SELFIES, where
  every other sequence decodes to a valid molecule anyway.
* :class:`SmilesSyntax`: SMILES's context-free syntax. Branches are opened and closed in order, ring-bond
  digits come in pairs, bonds sit between atoms, and ``<eos>`` only comes when every branch and ring is
  closed. Chemistry (valences, aromaticity) is left to the model and to RDKit.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from scivae.molecules.tokenizer import EOS_ID, SMILES_ALPHABETS, SPECIAL_TOKENS, Vocabulary

State = dict[str, Tensor]

# Token kinds of the SMILES syntax; START is the state before the first token.
START, ATOM, RING, OPEN, CLOSE, BOND, DOT = range(7)
_KINDS = 7
#: which kinds may follow which (rows: previous kind, columns: next kind)
_FOLLOWS = np.zeros((_KINDS, _KINDS), dtype=bool)
_FOLLOWS[:, ATOM] = True
for _prev in (ATOM, RING, OPEN, CLOSE):
    _FOLLOWS[_prev, BOND] = True
for _prev in (ATOM, RING, BOND):
    _FOLLOWS[_prev, RING] = True
for _prev in (ATOM, RING, CLOSE):
    _FOLLOWS[_prev, OPEN] = _FOLLOWS[_prev, CLOSE] = _FOLLOWS[_prev, DOT] = True
_MAY_END = np.zeros(_KINDS, dtype=bool)
_MAY_END[[ATOM, RING, CLOSE]] = True


class DecodingConstraint(Protocol):
    """The interface :meth:`~scivae.molecules.module.MolVAEModule.decode` uses."""

    def start(self, n: int, device: torch.device) -> State: ...

    def allowed(self, state: State) -> Tensor: ...

    def advance(self, state: State, token: Tensor) -> None: ...


def smiles_token_kind(token: str) -> int:
    """Syntactic kind of one SMILES token (atom, ring-bond digit, branch open/close, bond, dot)."""
    if token.startswith("[") or token[0].isalpha() or token == "*":
        return ATOM
    if token.isdigit() or token.startswith("%"):
        return RING
    return {"(": OPEN, ")": CLOSE, ".": DOT}.get(token, BOND)


class AtomFirst:
    """``<eos>`` is allowed only once a token that places an atom was emitted (no empty molecule)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.atoms = torch.as_tensor(vocab.atom_mask())
        self.n_tokens = len(vocab)

    def start(self, n: int, device: torch.device) -> State:
        return {"has_atom": torch.zeros(n, dtype=torch.bool, device=device)}

    def allowed(self, state: State) -> Tensor:
        mask = torch.ones(len(state["has_atom"]), self.n_tokens, dtype=torch.bool, device=state["has_atom"].device)
        mask[:, EOS_ID] = state["has_atom"]
        return mask

    def advance(self, state: State, token: Tensor) -> None:
        state["has_atom"] |= self.atoms.to(token.device)[token]


class SmilesSyntax:
    """SMILES syntax as a token mask: balanced branches, paired ring bonds, bonds between atoms.

    Besides the order of atoms, bonds, branches and ring-bond digits, the state remembers which atoms the
    current atom is already bonded to, so that a ring bond never closes on its own atom (``C11``), on the
    atom the chain came from (``C1C1``) or twice between the same two atoms (``C12CCC12``): RDKit rejects all
    three. Every string that ends under this constraint parses as SMILES (``Chem.MolFromSmiles(s,
    sanitize=False)``), and every canonical SMILES RDKit writes is allowed, token by token.

    Parameters
    ----------
    vocab
        A SMILES vocabulary.
    """

    def __init__(self, vocab: Vocabulary) -> None:
        if vocab.alphabet not in SMILES_ALPHABETS:
            raise ValueError(f"SmilesSyntax needs a SMILES vocabulary, got {vocab.alphabet!r}")
        n_special = len(SPECIAL_TOKENS)
        kinds = np.full(len(vocab), ATOM, dtype=np.int64)  # special tokens: never emitted, see decode()
        kinds[n_special:] = [smiles_token_kind(t) for t in vocab.tokens[n_special:]]
        rings = [i for i in range(n_special, len(vocab)) if kinds[i] == RING]
        ring_slot = np.full(len(vocab), -1, dtype=np.int64)
        ring_slot[rings] = np.arange(len(rings))
        # allowed[prev_kind, token]; <eos> follows the end rule, its depth/ring condition is added per state
        allowed = _FOLLOWS[:, kinds]
        allowed[:, EOS_ID] = _MAY_END
        self.kinds = torch.as_tensor(kinds)
        self.ring_slot = torch.as_tensor(ring_slot)
        self.ring_ids = torch.as_tensor(rings, dtype=torch.long)
        self.n_rings = len(rings)
        self.table = torch.as_tensor(allowed)
        self.is_close = self.kinds == CLOSE

    def start(self, n: int, device: torch.device) -> State:
        r = max(self.n_rings, 1)
        return {
            "prev": torch.full((n,), START, dtype=torch.long, device=device),
            "prev2": torch.full((n,), START, dtype=torch.long, device=device),  # the kind before "prev"
            "depth": torch.zeros(n, dtype=torch.long, device=device),
            "stack": torch.zeros(n, 8, dtype=torch.long, device=device),  # branch points, grows when needed
            "n_atoms": torch.zeros(n, dtype=torch.long, device=device),
            "head": torch.full((n,), -1, dtype=torch.long, device=device),  # atom the next atom bonds to
            "ring_atom": torch.full((n, r), -1, dtype=torch.long, device=device),  # -1: ring bond not open
            "bonded": torch.zeros(n, 16, dtype=torch.bool, device=device),  # atoms bonded to the current atom
        }

    def allowed(self, state: State) -> Tensor:
        device = state["prev"].device
        mask = self.table.to(device)[state["prev"]].clone()
        mask &= ~(self.is_close.to(device).unsqueeze(0) & (state["depth"] == 0).unsqueeze(1))
        ring_atom = state["ring_atom"]
        is_open = ring_atom >= 0
        mask[:, EOS_ID] &= (state["depth"] == 0) & ~is_open.any(1)
        if self.n_rings:
            # closing a ring bond on the current atom, or onto an atom it is already bonded to, is not SMILES;
            # nor is a ring bond after a branch's own bond symbol, as in "C(=1"
            partner_bonded = state["bonded"].gather(1, ring_atom.clamp(min=0))
            bad_close = is_open & ((ring_atom == state["head"].unsqueeze(1)) | partner_bonded)
            branch_bond = (state["prev"] == BOND) & (state["prev2"] == OPEN)
            mask[:, self.ring_ids.to(device)] &= ~(bad_close | branch_bond.unsqueeze(1))
        return mask

    def advance(self, state: State, token: Tensor) -> None:
        device = token.device
        kind = self.kinds.to(device)[token]
        rows = torch.arange(len(token), device=device)
        # branches: '(' pushes the current atom, ')' returns to it
        opens, closes = kind == OPEN, kind == CLOSE
        if bool(opens.any()):
            if int(state["depth"].max()) + 1 >= state["stack"].shape[1]:
                state["stack"] = torch.cat([state["stack"], torch.zeros_like(state["stack"])], 1)
            state["stack"][rows[opens], state["depth"][opens]] = state["head"][opens]
            state["depth"] += opens.long()
        if bool(closes.any()):
            state["depth"] -= closes.long()
            back = state["stack"][rows[closes], state["depth"][closes]]
            state["head"][closes] = back
            state["bonded"][closes] = False  # only ring bonds of the newest atom are checked
        # a new atom is bonded to the atom it hangs from
        atoms = kind == ATOM
        if bool(atoms.any()):
            if int(state["n_atoms"].max()) + 1 >= state["bonded"].shape[1]:
                state["bonded"] = torch.cat([state["bonded"], torch.zeros_like(state["bonded"])], 1)
            new = state["n_atoms"][atoms]
            parent = state["head"][atoms]
            state["bonded"][atoms] = False
            has_parent = parent >= 0
            state["bonded"][rows[atoms][has_parent], parent[has_parent]] = True
            state["head"][atoms] = new
            state["n_atoms"] += atoms.long()
        # ring-bond digits open a ring bond at the current atom or close it onto the atom that opened it
        slot = self.ring_slot.to(device)[token]
        ring_rows = torch.nonzero(slot >= 0).squeeze(1)
        if len(ring_rows):
            s = slot[ring_rows]
            partner = state["ring_atom"][ring_rows, s]
            closing = partner >= 0
            state["bonded"][ring_rows[closing], partner[closing]] = True
            state["ring_atom"][ring_rows, s] = torch.where(closing, -1, state["head"][ring_rows])
        state["prev2"] = state["prev"]
        state["prev"] = kind


def decoding_constraint(vocab: Vocabulary, syntax: bool = True) -> DecodingConstraint:
    """:class:`SmilesSyntax` for SMILES (and Kekulé SMILES) with ``syntax``, else :class:`AtomFirst`."""
    if vocab.alphabet in SMILES_ALPHABETS and syntax:
        return SmilesSyntax(vocab)
    return AtomFirst(vocab)
