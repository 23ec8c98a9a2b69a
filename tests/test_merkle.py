"""RFC 6962 Merkle trees (p2pledger.chain.merkle): published vectors, then properties."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger.chain import merkle
from p2pledger.errors import ProofError

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=150)

# --- published vectors --------------------------------------------------------------
# The Certificate Transparency reference tree, copied from
#   google/certificate-transparency  cpp/merkletree/merkle_tree_test.cc
#     (kInputs, kSHA256Roots, kSHA256Paths; its leaf numbers are 1-based)
#   transparency-dev/merkle  testonly/constants.go (LeafInputs, NodeHashes, RootHashes)
#     and proof/verify_test.go (inclusionProofs; 1-based leaf numbers too).
# Indices below are 0-based, as in p2pledger.

LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]

EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# ROOTS[n - 1] is the root of the tree of the first n leaves.
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# NODE_HASHES[level][i]: the hash of the complete subtree of 2**level leaves starting
# at leaf i * 2**level (level 0: the leaf hashes).
NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]

# (index, tree size, audit path)
PATHS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# "abacaba...": an arbitrary hash from transparency-dev/merkle's tests, not in any tree.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def test_empty_tree() -> None:
    assert merkle.root([]).hex() == EMPTY_ROOT


@pytest.mark.parametrize("n", range(1, 9))
def test_published_roots(n: int) -> None:
    assert merkle.root(LEAVES[:n]).hex() == ROOTS[n - 1]


def test_published_node_hashes() -> None:
    for level, hashes in enumerate(NODE_HASHES):
        width = 1 << level
        for i, expected in enumerate(hashes):
            assert merkle.root(LEAVES[i * width : (i + 1) * width]).hex() == expected
    assert [merkle.leaf_hash(d).hex() for d in LEAVES] == NODE_HASHES[0]
    assert (
        merkle.node_hash(bytes.fromhex(NODE_HASHES[2][0]), bytes.fromhex(NODE_HASHES[2][1])).hex()
        == (NODE_HASHES[3][0])
    )


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_published_audit_paths(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(index, LEAVES[:size])
    assert [p.hex() for p in proof] == path
    root = bytes.fromhex(ROOTS[size - 1])
    assert merkle.root_from_proof(index, size, LEAVES[index], proof) == root
    merkle.verify(index, size, LEAVES[index], proof, root)


def _corruptions(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """The probes of transparency-dev/merkle proof/verify_test.go corruptInclusionProof."""
    probes = [
        ("index - 1", index - 1, size, leaf, proof, root),
        ("index + 1", index + 1, size, leaf, proof, root),
        ("index ^ 2", index ^ 2, size, leaf, proof, root),
        ("size * 2", index, size * 2, leaf, proof, root),
        ("size / 2", index, size // 2, leaf, proof, root),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root),
        ("empty root", index, size, leaf, proof, bytes.fromhex(EMPTY_ROOT)),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], root),
        ("trailing root", index, size, leaf, [*proof, root], root),
        ("preceding garbage", index, size, leaf, [b"", *proof], root),
        ("preceding root", index, size, leaf, [root, *proof], root),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((f"proof[{i}] bit 3", index, size, leaf, wrong, root))
    if proof:
        probes.append(("removed component", index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append(
            ("inserted component", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root)
        )
    return probes


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_corrupted_published_proofs_fail(index: int, size: int, path: list[str]) -> None:
    proof = [bytes.fromhex(p) for p in path]
    root = bytes.fromhex(ROOTS[size - 1])
    for what, i, n, leaf, wrong_proof, wrong_root in _corruptions(
        index, size, LEAVES[index], proof, root
    ):
        with pytest.raises(ProofError):
            merkle.verify(i, n, leaf, wrong_proof, wrong_root)
            pytest.fail(f"{what} verified")


# --- properties -----------------------------------------------------------------------


def _leaves(n: int) -> list[bytes]:
    """Distinct leaves of varying length (no two equal, so no proof fits two leaves)."""
    return [i.to_bytes(2, "big") + hashlib.sha256(bytes([i])).digest()[: i % 33] for i in range(n)]


def _reference_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1's recursive definition, word for word, to check the O(n) builder."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _reference_root(leaves[:k]), _reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_root_matches_the_rfc_definition() -> None:
    for n in range(0, 70):
        assert merkle.root(_leaves(n)) == _reference_root(_leaves(n)), n


def test_every_proof_of_every_leaf_verifies() -> None:
    for n in range(1, 71):
        leaves = _leaves(n)
        root = merkle.root(leaves)
        for i in range(n):
            proof = merkle.inclusion_proof(i, leaves)
            assert merkle.root_from_proof(i, n, leaves[i], proof) == root
            merkle.verify(i, n, leaves[i], proof, root)


def test_root_commits_to_the_leaf_count() -> None:
    # A Bitcoin-style tree that duplicates the odd last node gives [a,b,c] and
    # [a,b,c,c] the same root; RFC 6962 must not.
    a, b, c = b"a", b"b", b"c"
    assert merkle.root([a, b, c]) != merkle.root([a, b, c, c])


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    # A two-leaf tree's root is not the leaf hash of the concatenated leaf hashes.
    left, right = merkle.leaf_hash(b"l"), merkle.leaf_hash(b"r")
    assert merkle.root([b"l", b"r"]) == merkle.node_hash(left, right)
    assert merkle.root([b"l", b"r"]) != merkle.leaf_hash(left + right)


sizes_and_index = st.integers(min_value=1, max_value=70).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n - 1))
)


@PROPERTY
@given(sizes_and_index, st.integers(min_value=0))
def test_proof_for_another_leaf_fails(size_index: tuple[int, int], pick: int) -> None:
    n, i = size_index
    leaves = _leaves(n)
    proof = merkle.inclusion_proof(i, leaves)
    j = pick % n
    other = leaves[j] if j != i else b"not a leaf"
    with pytest.raises(ProofError):
        merkle.verify(i, n, other, proof, merkle.root(leaves))


@PROPERTY
@given(sizes_and_index, st.integers(min_value=-3, max_value=80))
def test_proof_at_a_wrong_index_fails(size_index: tuple[int, int], j: int) -> None:
    n, i = size_index
    if j == i:
        j = i + 1
    leaves = _leaves(n)
    proof = merkle.inclusion_proof(i, leaves)
    with pytest.raises(ProofError):
        merkle.verify(j, n, leaves[i], proof, merkle.root(leaves))


def test_proof_at_every_wrong_index_fails_exhaustively() -> None:
    for n in range(1, 34):
        leaves = _leaves(n)
        root = merkle.root(leaves)
        for i in range(n):
            proof = merkle.inclusion_proof(i, leaves)
            for j in range(n):
                if j != i:
                    with pytest.raises(ProofError):
                        merkle.verify(j, n, leaves[i], proof, root)


@PROPERTY
@given(sizes_and_index, st.integers(min_value=1, max_value=8))
def test_truncated_proof_fails(size_index: tuple[int, int], drop: int) -> None:
    n, i = size_index
    leaves = _leaves(n)
    proof = merkle.inclusion_proof(i, leaves)
    if not proof:
        return  # a one-leaf tree has an empty proof; nothing to truncate
    for shorter in (proof[: max(0, len(proof) - drop)], proof[min(drop, len(proof)) :]):
        with pytest.raises(ProofError):
            merkle.verify(i, n, leaves[i], shorter, merkle.root(leaves))
        with pytest.raises(ProofError, match="shorter"):
            merkle.root_from_proof(i, n, leaves[i], shorter)


@PROPERTY
@given(sizes_and_index, st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3))
def test_extended_proof_fails(size_index: tuple[int, int], extra: list[bytes]) -> None:
    n, i = size_index
    leaves = _leaves(n)
    proof = merkle.inclusion_proof(i, leaves)
    root = merkle.root(leaves)
    with pytest.raises(ProofError):
        merkle.verify(i, n, leaves[i], [*proof, *extra], root)
    with pytest.raises(ProofError):
        merkle.verify(i, n, leaves[i], [*extra, *proof], root)
    # The length alone gives it away: no root is computed from a too-long proof.
    with pytest.raises(ProofError, match="longer"):
        merkle.root_from_proof(i, n, leaves[i], [*proof, *extra])


@PROPERTY
@given(sizes_and_index, st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_flipped_bit_fails(size_index: tuple[int, int], where: int, bit: int) -> None:
    """One bit flipped anywhere: in a proof element, in the leaf, or in the root."""
    n, i = size_index
    leaves = _leaves(n)
    proof = merkle.inclusion_proof(i, leaves)
    root = merkle.root(leaves)

    def flip(data: bytes, at: int) -> bytes:
        return data[: at // 8] + bytes([data[at // 8] ^ 1 << (at % 8)]) + data[at // 8 + 1 :]

    with pytest.raises(ProofError):
        merkle.verify(i, n, leaves[i], proof, flip(root, bit))
    with pytest.raises(ProofError):
        merkle.verify(i, n, flip(leaves[i], bit % (8 * len(leaves[i]))), proof, root)
    if proof:
        k = where % len(proof)
        wrong = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify(i, n, leaves[i], wrong, root)


@pytest.mark.parametrize(("index", "size"), [(-1, 1), (1, 1), (0, 0), (5, 3), (0, -1)])
def test_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        merkle.root_from_proof(index, size, b"x", [])
    with pytest.raises(ProofError):
        merkle.inclusion_proof(index, _leaves(max(size, 0)))


def test_proof_elements_must_be_hashes() -> None:
    leaves = _leaves(4)
    proof = merkle.inclusion_proof(1, leaves)
    with pytest.raises(ProofError):
        merkle.verify(1, 4, leaves[1], [proof[0][:31], *proof[1:]], merkle.root(leaves))
