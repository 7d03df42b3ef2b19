"""RFC 6962 Merkle hash trees (section 2.1, as restated in RFC 9162 section 2.1): leaf and
node hashing, tree heads, inclusion and consistency proofs, and their verification.

With ``D[n]`` the list of ``n`` entries and ``k`` the largest power of two below ``n``::

    MTH({})    = SHA-256()
    MTH({d0})  = SHA-256(0x00 || d0)
    MTH(D[n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))

:class:`MerkleTree` keeps every complete, aligned subtree's hash by level (``2n`` hashes in
all), so a tree head, an inclusion proof or a consistency proof costs ``O(log n)`` hashes
once the leaves are in. The verifiers follow RFC 9162 2.1.3.2 and 2.1.4.2 step by step and
raise :class:`~vault.errors.ProofError` saying what did not match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from .errors import ProofError

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "MerkleTree", "leaf_hash", "node_hash", "root_hash",
           "verify_consistency", "verify_inclusion"]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || entry)``."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The tree head of the leaves whose hashes are ``leaf_hashes`` (in one pass)."""
    stack: list[bytes] = []   # hashes of complete subtrees, largest first
    for count, h in enumerate(leaf_hashes, 1):
        stack.append(h)
        c = count
        while not c & 1:
            right = stack.pop()
            stack[-1] = node_hash(stack[-1], right)
            c >>= 1
    if not stack:
        return EMPTY_ROOT
    r = stack.pop()
    while stack:
        r = node_hash(stack.pop(), r)
    return r


class MerkleTree:
    """An append-only RFC 6962 tree over leaf hashes, with its proofs.

    ``levels[j][i]`` is the hash of the complete subtree over leaves
    ``[i * 2**j, (i + 1) * 2**j)``; such a subtree never changes once complete."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @classmethod
    def from_leaf_hashes(cls, leaves: Sequence[bytes]) -> MerkleTree:
        """A tree over ``leaves`` built level by level (faster than appending one by one)."""
        if any(len(h) != HASH_SIZE for h in leaves):
            raise ProofError(f"a leaf hash has {HASH_SIZE} bytes")
        tree = cls()
        level = list(leaves)
        tree.levels = [level]
        sha256 = _sha256
        while len(level) >= 2:
            level = [sha256(b"\x01" + level[i] + level[i + 1]).digest()
                     for i in range(0, len(level) - 1, 2)]
            tree.levels.append(level)
        return tree

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        """Add a leaf by its hash (:func:`leaf_hash` of the entry)."""
        if len(leaf) != HASH_SIZE:
            raise ProofError(f"a leaf hash has {HASH_SIZE} bytes, not {len(leaf)}")
        levels = self.levels
        levels[0].append(leaf)
        j = 0
        while len(levels[j]) % 2 == 0:
            below = levels[j]
            if j + 1 == len(levels):
                levels.append([])
            levels[j + 1].append(node_hash(below[-2], below[-1]))
            j += 1

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return self.levels[0][index]

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is outside 0..{self.size}")
        return size

    def _mth(self, start: int, n: int) -> bytes:
        """MTH of the ``n >= 1`` leaves from ``start``; ``start`` is a multiple of the
        largest power of two <= ``n`` (true of every subtree the RFC recursion visits)."""
        if n & (n - 1) == 0:
            j = n.bit_length() - 1
            return self.levels[j][start >> j]
        k = _split(n)
        return node_hash(self._mth(start, k), self._mth(start + k, n - k))

    def root(self, size: int | None = None) -> bytes:
        """The tree head at ``size`` leaves (default: all)."""
        size = self._check_size(size)
        return self._mth(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 ``PATH(index, D[size])``: the audit path of leaf ``index``."""
        size = self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
        path: list[bytes] = []
        start, n, m = 0, size, index
        while n > 1:
            k = _split(n)
            if m < k:
                path.append(self._mth(start + k, n - k))
                n = k
            else:
                path.append(self._mth(start, k))
                start, n, m = start + k, n - k, m - k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 ``PROOF(old_size, D[new_size])``: empty when the sizes are equal or the
        old tree is empty."""
        new_size = self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        proof: list[bytes] = []
        start, n, m, whole = 0, new_size, old_size, True
        while m != n:
            k = _split(n)
            if m <= k:
                proof.append(self._mth(start + k, n - k))
                n = k
            else:
                proof.append(self._mth(start, k))
                start, n, m, whole = start + k, n - k, m - k, False
        if not whole:
            proof.append(self._mth(start, n))
        proof.reverse()
        return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} has {len(value)} bytes, a SHA-256 hash has {HASH_SIZE}")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Check that the leaf whose hash is ``leaf`` is entry ``index`` of the tree of ``size``
    leaves whose head is ``root`` (RFC 9162 2.1.3.2); raise ProofError if not."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} cannot be in a tree of {size} leaves")
    _check_hash(leaf, "the leaf hash")
    _check_hash(root, "the root hash")
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof element {i}")
        if sn == 0:
            raise ProofError(f"the inclusion proof of leaf {index} in a tree of {size} has "
                             f"{len(proof)} hashes, more than the tree's height")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the inclusion proof of leaf {index} in a tree of {size} has "
                         f"{len(proof)} hashes, too few")
    if not hmac.compare_digest(r, root):
        raise ProofError(f"leaf {index} is not in the tree of {size} leaves with root "
                         f"{root.hex()}: the proof leads to {r.hex()}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Check that the tree of ``old_size`` leaves with head ``old_root`` is a prefix of the
    tree of ``new_size`` leaves with head ``new_root`` (RFC 9162 2.1.4.2); raise
    ProofError if not."""
    where = f"from size {old_size} to {new_size}"
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency {where}: a log only grows")
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof element {i}")
    if old_size == new_size:
        if proof:
            raise ProofError(f"the consistency proof {where} must be empty")
        if not hmac.compare_digest(old_root, new_root):
            raise ProofError(f"two trees of {old_size} leaves with different roots: "
                             f"{old_root.hex()} and {new_root.hex()}")
        return
    if old_size == 0:
        if proof:
            raise ProofError(f"the consistency proof {where} must be empty")
        return
    _check_hash(old_root, "the old root hash")
    _check_hash(new_root, "the new root hash")
    if not proof:
        raise ProofError(f"the consistency proof {where} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the consistency proof {where} has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the consistency proof {where} has too few hashes")
    if not hmac.compare_digest(fr, old_root):
        raise ProofError(f"the consistency proof {where} does not lead to the old root "
                         f"{old_root.hex()}")
    if not hmac.compare_digest(sr, new_root):
        raise ProofError(f"the consistency proof {where} does not lead to the new root "
                         f"{new_root.hex()}")
