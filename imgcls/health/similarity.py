"""Which images are the same picture: perceptual hashes, embedding similarity, and groups of copies."""

from __future__ import annotations

import numpy as np

HASH_SIDE = 16  # the 16×16 lowest DCT frequencies: 256 bits; 64 bits could not tell apart plain-background shapes
HASH_GRID = 32  # the image is averaged down to 32×32 grey before the DCT, as in the classic pHash
# (hash bits that may differ, cosine similarity needed): the closer the hashes, the less the embeddings
# must agree. Measured on the shapes sample and on hymenoptera photos: resized and re-encoded copies
# differ in ≤ 22 of 256 bits with cosine ≥ 0.78; crops of 2–3% a side differ in 24–70 bits with cosine
# ≥ 0.9; distinct images differ in ≥ 40 bits, and those within 72 bits have cosine ≤ 0.86. Both must
# agree: random mosaics, all alike to an ImageNet backbone (cosine 0.97), differ in over 80 bits.
# Unrelated images differ in about 128 bits; heavier crops than a few percent are not caught.
NEAR_RULES = ((32, 0.75), (72, 0.90))
CHUNK = 1024  # rows of the similarity matrix held at once: 1024 × 10,000 floats is 40 MB


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)).astype(np.float32)


def phash(images: np.ndarray) -> np.ndarray:
    """256-bit DCT perceptual hashes of uint8 N×S×S×3 images, as N×4 uint64."""
    n = len(images)
    if n == 0:
        return np.zeros((0, HASH_SIDE * HASH_SIDE // 64), dtype=np.uint64)
    grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    step = grey.shape[1] // HASH_GRID
    side = step * HASH_GRID
    small = grey[:, :side, :side].reshape(n, HASH_GRID, step, HASH_GRID, step).mean(axis=(2, 4))
    dct = _dct_matrix(HASH_GRID)
    coef = (dct @ small @ dct.T)[:, :HASH_SIDE, :HASH_SIDE].reshape(n, -1)
    # the median leaves out the DC term (overall brightness), so a brighter copy keeps its hash
    bits = coef > np.median(coef[:, 1:], axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits between hashes a (N×W) and b (M×W), as an N×M matrix."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=-1)


def normalise(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity becomes a dot product)."""
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def near_pairs(emb: np.ndarray, hashes: np.ndarray, rules=NEAR_RULES, chunk: int = CHUNK) -> list[tuple]:
    """Pairs (i, j, cosine, hash distance) with i < j that pass one of the rules, in row chunks."""
    unit = normalise(emb)
    floor = min(cos for _, cos in rules)
    out = []
    for start in range(0, len(unit), chunk):
        sims = unit[start:start + chunk] @ unit.T
        rows, cols = np.nonzero(sims >= floor)
        keep = cols > rows + start  # each pair once, never an image with itself
        rows, cols = rows[keep], cols[keep]
        if not len(rows):
            continue
        cos = sims[rows, cols]
        dist = np.bitwise_count(hashes[rows + start] ^ hashes[cols]).sum(axis=-1)
        ok = np.zeros(len(rows), dtype=bool)
        for bits, need in rules:
            ok |= (dist <= bits) & (cos >= need)
        out += [(int(i + start), int(j), float(c), int(d))
                for i, j, c, d in zip(rows[ok], cols[ok], cos[ok], dist[ok])]
    return out


def groups(n: int, pairs) -> list[list[int]]:
    """Connected groups (size ≥ 2) of the graph on n items with the given (i, j, …) edges."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return i

    for pair in pairs:
        a, b = root(pair[0]), root(pair[1])
        if a != b:
            parent[max(a, b)] = min(a, b)
    found: dict[int, list[int]] = {}
    for i in range(n):
        found.setdefault(root(i), []).append(i)
    return sorted((g for g in found.values() if len(g) > 1), key=lambda g: g[0])
