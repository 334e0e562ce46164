"""Tokenising molecules (SMILES, Kekulé SMILES or SELFIES) and the vocabulary saved with a model.

SMILES are split by a regular expression: a bracket atom (``[nH]``, ``[C@@H]``, ``[N+]``, ``[O-]``) is one
token, so are the two-letter atoms ``Cl`` and ``Br`` and two-digit ring closures ``%10``; everything else is
one character (atoms, bonds, branches, ring digits, ``/`` and ``\\`` stereo bonds). ``alphabet="kekule"``
tokenises the same way RDKit's canonical SMILES written in Kekulé form (``C1=CC=CC=C1`` for benzene): the
model writes double bonds itself, so a sample can no longer fail RDKit's kekulisation of aromatic atoms (the
most common reason a sampled aromatic SMILES is invalid); it can still break valences. With
``alphabet="selfies"`` each molecule is translated to SELFIES (``selfies`` package) and split into its
bracketed symbols; any sequence of SELFIES symbols decodes to a valid molecule.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from scivae.errors import ScivaeInputError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
ALPHABETS = ("smiles", "kekule", "selfies")
#: Alphabets written as SMILES text (the regex tokens; SMILES syntax applies).
SMILES_ALPHABETS = ("smiles", "kekule")

_SMILES_TOKEN = re.compile(
    r"\[[^\[\]]+\]"  # bracket atom: isotope, element, chirality, H count, charge, class
    r"|Br|Cl"  # two-letter organic-subset atoms
    r"|%\d{2}"  # two-digit ring closure
    r"|[BCNOPSFI]|[bcnops]"  # organic-subset atoms, aromatic atoms
    r"|[()=#\-+\\/:~.*$@]"  # branches, bonds, stereo bonds, dot, wildcard
    r"|\d"  # one-digit ring closure
)


def check_alphabet(alphabet: str) -> str:
    """Return ``alphabet`` lower-cased, or raise when it is not ``smiles`` or ``selfies``."""
    a = str(alphabet).lower()
    if a not in ALPHABETS:
        raise ScivaeInputError(f"unknown alphabet {alphabet!r}: use 'smiles', 'kekule' or 'selfies'")
    return a


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES string into tokens; ``"".join(tokens) == smiles``.

    Raises
    ------
    ScivaeInputError
        When a character cannot start any SMILES token (e.g. whitespace or a stray ``]``).
    """
    tokens: list[str] = []
    pos = 0
    for m in _SMILES_TOKEN.finditer(smiles):
        if m.start() != pos:
            break
        tokens.append(m.group())
        pos = m.end()
    if pos != len(smiles):
        raise ScivaeInputError(
            f"cannot tokenise SMILES {smiles!r} at character {pos} ({smiles[pos]!r}): give valid SMILES"
        )
    return tokens


def smiles_to_selfies(smiles: str) -> str:
    """Translate SMILES to SELFIES; raise :class:`ScivaeInputError` when SELFIES cannot represent it."""
    import selfies as sf

    try:
        out = sf.encoder(smiles)
    except sf.EncoderError as exc:
        raise ScivaeInputError(
            f"SELFIES cannot encode {smiles!r} (unusual valence or charge): remove it or use alphabet='smiles'"
        ) from exc
    if out is None:  # older selfies versions return None instead of raising
        raise ScivaeInputError(f"SELFIES cannot encode {smiles!r}: remove it or use alphabet='smiles'")
    return out


def kekule_smiles(smiles: str) -> str:
    """RDKit's canonical SMILES in Kekulé form: explicit single and double bonds, no aromatic lower case."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ScivaeInputError(f"{smiles!r} is not a valid SMILES: fix or remove it")
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except Chem.KekulizeException as exc:
        raise ScivaeInputError(f"{smiles!r} has no Kekulé form: use alphabet='smiles'") from exc
    return Chem.MolToSmiles(mol, kekuleSmiles=True)


def tokenize(smiles: str, alphabet: str = "smiles") -> list[str]:
    """Tokens of one (canonical) SMILES string in the given alphabet."""
    if alphabet == "smiles":
        return tokenize_smiles(smiles)
    if alphabet == "kekule":
        return tokenize_smiles(kekule_smiles(smiles))
    import selfies as sf

    return list(sf.split_selfies(smiles_to_selfies(smiles)))


def detokenize(tokens: Sequence[str], alphabet: str = "smiles") -> str:
    """Join tokens back into a SMILES string (SELFIES symbols are decoded to SMILES)."""
    text = "".join(tokens)
    if alphabet in SMILES_ALPHABETS:
        return text
    import selfies as sf

    try:
        return sf.decoder(text) or ""
    except sf.DecoderError:
        return ""


def tokenize_many(smiles: Iterable[str], alphabet: str = "smiles") -> tuple[list[list[str]], list[int]]:
    """Tokenise many molecules; return the token lists and the indices of those that failed (skipped)."""
    alphabet = check_alphabet(alphabet)
    out: list[list[str]] = []
    failed: list[int] = []
    for i, s in enumerate(smiles):
        try:
            out.append(tokenize(s, alphabet))
        except ScivaeInputError:
            failed.append(i)
    return out, failed


#: Largest ``max_tokens`` a saved vocabulary may declare (generation allocates that many steps).
MAX_SAVED_TOKENS = 100_000


@dataclass
class Vocabulary:
    """Token <-> index map learned from a training set and saved (as JSON) with the model.

    Index 0..3 are the special tokens ``<pad>``, ``<bos>``, ``<eos>`` and ``<unk>`` (the latter only replaces
    decoder inputs during word dropout; it is never produced from a molecule).

    Attributes
    ----------
    alphabet
        ``"smiles"``, ``"kekule"`` or ``"selfies"``.
    tokens
        All tokens, special tokens first; the index of a token is its position.
    max_tokens
        Longest training molecule in tokens (without ``<bos>``/``<eos>``); bounds generation length.
    """

    alphabet: str
    tokens: list[str]
    max_tokens: int

    def __post_init__(self) -> None:
        self.alphabet = check_alphabet(self.alphabet)
        if tuple(self.tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ScivaeInputError("vocabulary does not start with the special tokens: the model file is damaged")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]], alphabet: str) -> Vocabulary:
        """Vocabulary of all tokens in ``token_lists``, most frequent first (ties alphabetical)."""
        counts = Counter(t for toks in token_lists for t in toks)
        if not counts:
            raise ScivaeInputError("no tokens to build a vocabulary from: give at least one molecule")
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        max_tokens = max(len(toks) for toks in token_lists)
        return cls(alphabet, [*SPECIAL_TOKENS, *ordered], max_tokens)

    def ids(self, tokens: Sequence[str], smiles: str | None = None) -> list[int]:
        """Indices of ``tokens``; an unknown token raises an error naming it."""
        try:
            return [self.index[t] for t in tokens]
        except KeyError as exc:
            tok = exc.args[0]
            what = f" in {smiles!r}" if smiles is not None else ""
            raise ScivaeInputError(
                f"token {tok!r}{what} is not in this model's {self.alphabet} vocabulary (it never occurred "
                "in the training set): remove that molecule or retrain on data that contains it"
            ) from None

    def encode(
        self, token_lists: Sequence[Sequence[str]], smiles: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pad token lists into an int64 array ``[N, L + 1]`` (tokens then ``<eos>``) plus lengths (with eos).

        Parameters
        ----------
        token_lists
            Tokens of each molecule.
        smiles
            The molecules' strings, only used to name the culprit of an unknown-token error.
        """
        n = len(token_lists)
        lengths = np.fromiter((len(t) + 1 for t in token_lists), dtype=np.int64, count=n)
        width = int(lengths.max()) if n else 1
        arr = np.full((n, width), PAD_ID, dtype=np.int64)
        for i, toks in enumerate(token_lists):
            ids = self.ids(toks, smiles[i] if smiles is not None else None)
            arr[i, : len(ids)] = ids
            arr[i, len(ids)] = EOS_ID
        return arr, lengths

    def atom_mask(self) -> np.ndarray:
        """Boolean per token: does it place an atom? (SELFIES branch/ring symbols and SMILES bonds, digits
        and parentheses do not; a molecule needs at least one atom token.)"""
        out = np.zeros(len(self.tokens), dtype=bool)
        for i, t in enumerate(self.tokens[len(SPECIAL_TOKENS) :], start=len(SPECIAL_TOKENS)):
            if self.alphabet == "selfies":
                out[i] = not any(k in t for k in ("Branch", "Ring", "nop"))
            else:
                out[i] = t.startswith("[") or t[0].isalpha() or t == "*"
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``<eos>`` (special tokens skipped)."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i < len(SPECIAL_TOKENS):
                continue
            out.append(self.tokens[i])
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {"alphabet": self.alphabet, "tokens": list(self.tokens), "max_tokens": int(self.max_tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        """Inverse of :meth:`to_dict`."""
        try:
            vocab = cls(str(d["alphabet"]), [str(t) for t in d["tokens"]], int(d["max_tokens"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ScivaeInputError(f"damaged vocabulary in the model directory ({exc}): re-save the model") from exc
        if not 1 <= vocab.max_tokens <= MAX_SAVED_TOKENS:  # it bounds generation: refuse a tampered size
            raise ScivaeInputError(
                f"damaged vocabulary in the model directory (max_tokens {vocab.max_tokens} is not in 1 to "
                f"{MAX_SAVED_TOKENS}): re-save the model"
            )
        return vocab
