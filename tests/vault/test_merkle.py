"""RFC 6962 hashing and proofs against the Certificate Transparency reference vectors
(transparency-dev/merkle proof/verify_test.go), then random trees with hypothesis."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.errors import ProofError
from vault.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243",
                                     "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [bytes.fromhex(h) for h in [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]]


def h(x: str) -> bytes:
    return bytes.fromhex(x)


# (leaf index, tree size, proof): the reference's 1-based leaves made 0-based
INCLUSION = [
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (0, 1, []),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]
SOME = h("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return MerkleTree(leaf_hash(x) for x in LEAVES)


def test_leaf_and_node_hashes_use_the_rfc_6962_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == ROOTS[1]
    assert node_hash(leaf_hash(b""), leaf_hash(b"\x00")) == ROOTS[2]
    assert EMPTY_ROOT == ROOTS[0]


def test_tree_heads_match_the_reference_for_every_size(tree: MerkleTree) -> None:
    for n in range(len(LEAVES) + 1):
        assert tree.root(n) == ROOTS[n], n
        assert root_hash([leaf_hash(x) for x in LEAVES[:n]]) == ROOTS[n], n


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_reference_and_verify(tree: MerkleTree, index: int,
                                                         size: int, proof: list[bytes]) -> None:
    assert tree.inclusion_proof(index, size) == proof
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION[:4])
def test_corrupted_inclusion_proofs_are_refused(index: int, size: int,
                                                proof: list[bytes]) -> None:
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size]
    probes = [
        (index - 1, size, leaf, proof, root), (index + 1, size, leaf, proof, root),
        (index ^ 2, size, leaf, proof, root), (index, size * 2, leaf, proof, root),
        (index, size // 2, leaf, proof, root), (index, size, leaf_hash(b"WrongLeaf"), proof, root),
        (index, size, leaf, proof, EMPTY_ROOT), (index, size, leaf, proof, SOME),
        (index, size, leaf, [*proof, b""], root), (index, size, leaf, [*proof, root], root),
        (index, size, leaf, [b"", *proof], root), (index, size, leaf, [root, *proof], root),
        (index, size, leaf, proof[:-1], root), (index, size, leaf, [proof[0], SOME, *proof[1:]], root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((index, size, leaf, flipped, root))
    for p in probes:
        if p[0] == index and p[1] == size and p[2] == leaf and p[3] == proof and p[4] == root:
            continue
        with pytest.raises(ProofError):
            verify_inclusion(p[2], p[0], p[1], p[3], p[4])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_reference_and_verify(tree: MerkleTree, old: int,
                                                           new: int, proof: list[bytes]) -> None:
    assert tree.consistency_proof(old, new) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_are_refused(old: int, new: int,
                                                  proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof), (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof), (old, new, SOME, r2, proof), (old, new, r1, SOME, proof),
        (old, new, r2, r1, proof), (old, new, r1, r2, []), (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [*proof, r1]), (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]), (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]), (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((old, new, r1, r2, flipped))
    for p in probes:
        with pytest.raises(ProofError):
            verify_consistency(*p)


def test_edge_sizes_of_consistency() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])  # anything extends the empty tree
    with pytest.raises(ProofError, match="only grows"):
        verify_consistency(2, 1, ROOTS[2], ROOTS[1], [])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(1, 1, ROOTS[1], ROOTS[1], [EMPTY_ROOT])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_inclusion_proof_of_a_random_tree_verifies_and_no_other_leaf_does(
        size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = MerkleTree(leaves)
    at = data.draw(st.integers(0, size - 1), label="tree size at proof time") + 1
    index = data.draw(st.integers(0, at - 1), label="leaf")
    proof = tree.inclusion_proof(index, at)
    verify_inclusion(leaves[index], index, at, proof, root_hash(leaves[:at]))
    if at > 1:
        other = (index + 1) % at
        with pytest.raises(ProofError):
            verify_inclusion(leaves[other], index, at, proof, tree.root(at))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_consistency_proofs_between_random_sizes_verify_and_a_changed_leaf_breaks_them(
        size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = MerkleTree(leaves)
    new = data.draw(st.integers(1, size), label="new size")
    old = data.draw(st.integers(1, new), label="old size")
    proof = tree.consistency_proof(old, new)
    verify_consistency(old, new, tree.root(old), tree.root(new), proof)
    if old < new:
        # a log that rewrote one of the old entries cannot prove it extends the old head
        changed = list(leaves[:new])
        changed[data.draw(st.integers(0, old - 1), label="changed leaf")] = leaf_hash(b"edited")
        forged = MerkleTree(changed)
        with pytest.raises(ProofError):
            verify_consistency(old, new, tree.root(old), forged.root(),
                               forged.consistency_proof(old, new))


def test_proofs_outside_the_tree_are_refused(tree: MerkleTree) -> None:
    with pytest.raises(ProofError, match="not in a tree of 8"):
        tree.inclusion_proof(8)
    with pytest.raises(ProofError, match="outside 0..8"):
        tree.root(9)
    with pytest.raises(ProofError, match="32 bytes"):
        MerkleTree([b"short"])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 200), st.integers(0, 20))
def test_a_tree_built_in_bulk_is_the_tree_built_leaf_by_leaf_and_keeps_growing(
        n: int, more: int) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n + more)]
    bulk = MerkleTree.from_leaf_hashes(leaves[:n])
    for h in leaves[n:]:
        bulk.append(h)
    one_by_one = MerkleTree(leaves)
    assert bulk.levels == one_by_one.levels
    assert bulk.root() == root_hash(leaves)
