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
BLOCK_BYTES = 256 << 20  # one block of the similarity matrix: 256 MB whatever the dataset size
MAX_ROWS = 1024  # rows of a block at most (small datasets need no bigger step between stop checks)
# Past this many images the search goes through a faiss IVF index instead of comparing every pair: at 50,000
# both cost about the same and the index still finds 99.8% of the pairs; past it, the exact search's cost grows
# with N² and the index's with about N^1.35 (the numbers are in `_index_blocks`).
EXACT_MAX = 50_000
IVF_PROBES = 32  # index cells visited per query (of 16·√N): 16 found only 97.8% of the pairs at 100,000
PAIRS = 1 << 20  # candidate pairs looked at together: their rows, columns and hashes take about 80 MB


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


def _block_rows(n: int) -> int:
    """Rows per block so that a block × n float32 matrix stays within BLOCK_BYTES."""
    return int(max(1, min(MAX_ROWS, BLOCK_BYTES // (4 * max(n, 1)))))


def _row_groups(counts: np.ndarray, most: int | None = None):
    """(first, end) row ranges whose counts add up to at most `most` (PAIRS; a row over it stands alone)."""
    most = PAIRS if most is None else most
    first, total = 0, 0
    for i, c in enumerate(counts.tolist()):
        if total and total + c > most:
            yield first, i
            first, total = i, 0
        total += c
    if first < len(counts):
        yield first, len(counts)


def _exact_blocks(unit: np.ndarray, floor: float):
    """(rows, cols, cosines, rows done) of every pair i < j with cosine ≥ floor, block of rows by block of rows, at most
    about PAIRS pairs at a time (images that all look alike to the backbone pass the floor by the million).

    Each block compares its rows with themselves and the rows after them only: the upper triangle,
    half the work of the full matrix."""
    n = len(unit)
    step = _block_rows(n)
    for start in range(0, n, step):
        sims = unit[start:start + step] @ unit[start:].T
        above = sims >= floor
        # each pair once, never an image with itself (cols count from `start`): the part right of the diagonal
        m = len(above)
        above[:, :m] &= ~np.tri(m, dtype=bool)
        for a, b in _row_groups(above.sum(axis=1)):
            rows, cols = np.nonzero(above[a:b])
            rows += a
            yield rows + start, cols + start, sims[rows, cols], start + b


def _index_blocks(unit: np.ndarray, floor: float, probes: int = IVF_PROBES):
    """Like `_exact_blocks`, through a faiss inverted-file index: each image is compared only with those
    in the IVF_PROBES cells of the index nearest to it.

    Measured on 2 cores (shared with other work, so ±30%), on 1280-d random unit vectors with 500 planted
    pairs at cosines 0.75…1: seconds, peak memory beyond the vectors, and the share of the exact search's
    pairs that the index finds (recall). Exact vs index:
        2,000 images    0.1 s,  15 MB  vs   0.4 s,  41 MB   recall 1.0
       10,000           1.6 s,  78 MB  vs   3.2 s, 101 MB   recall 1.0
       30,000           5.5 s, 254 MB  vs   6.9 s, 231 MB   recall 0.998
       50,000            30 s, 390 MB  vs    29 s, 371 MB   recall 0.998
      100,000          ≈ 68 s, 513 MB  vs    35 s, 714 MB   recall 0.994 (with 16 probes: 0.978)
    (≈: 37% of the exact blocks timed). The pairs missed lie near the lowest rule's cosine (0.75…0.85).
    On features shaped like a backbone's (non-negative, in 20 clusters, 1.6% of all pairs over cosine 0.75),
    10,000 images: 1.4 s vs 4.6 s, and the index finds 97.6% of the 1.6 million pairs over 0.75, which the
    hash rules then cut down to the copies. The index holds a copy of the vectors (the extra memory);
    blocks of queries keep the rest bounded."""
    import faiss

    n, dim = unit.shape
    # many small cells: finding a query's cells is one matrix product (fast), scanning them is not
    cells = int(max(1, min(16 * np.sqrt(n), n // 8)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10  # k-means rounds (faiss's default is 25): training is a good part of the cost
    index.cp.min_points_per_centroid = 1  # trained on 8 a cell (the recall above): quiet faiss's warning about 39
    rng = np.random.default_rng(0)
    index.train(unit[np.sort(rng.choice(n, size=min(n, 8 * cells), replace=False))])
    index.add(unit)
    index.nprobe = min(probes, cells)
    step = _block_rows(n)
    for start in range(0, n, step):
        block = unit[start:start + step]
        lims, sims, cols = index.range_search(block, float(np.nextafter(floor, -1, dtype=np.float32)))
        rows = np.repeat(np.arange(len(block)), np.diff(lims).astype(np.int64)) + start
        cols = cols.astype(np.int64)
        # a pair counts when either image's cells hold the other: found from i or from j, kept as (i, j)
        keep = (cols != rows) & (sims >= floor)
        rows, cols = rows[keep], cols[keep]
        yield np.minimum(rows, cols), np.maximum(rows, cols), sims[keep], start + len(block)


def near_pairs(emb: np.ndarray, hashes: np.ndarray, rules=NEAR_RULES, index: bool | None = None,
               progress=None) -> list[tuple]:
    """Pairs (i, j, cosine, hash distance) with i < j that pass one of the rules, block by block.

    Exact up to EXACT_MAX images, through a faiss index past it (or as `index` says); the job's Stop is
    honoured between blocks, and progress(fraction, text) is told after each."""
    from imgcls.jobs import current_token

    token = current_token()
    unit = normalise(emb)
    n = len(unit)
    floor = min(cos for _, cos in rules)
    use_index = n > EXACT_MAX if index is None else index
    blocks = (_index_blocks if use_index else _exact_blocks)(unit, floor)
    out = []
    for rows, cols, cos, done in blocks:
        token.check()
        if progress:
            progress(done / max(n, 1), f"Comparing images: {done:,} of {n:,}")
        for at in range(0, len(rows), PAIRS):  # the index's blocks are not cut to PAIRS: cut them here
            r, c, s = rows[at:at + PAIRS], cols[at:at + PAIRS], cos[at:at + PAIRS]
            dist = np.bitwise_count(hashes[r] ^ hashes[c]).sum(axis=-1)
            ok = np.zeros(len(r), dtype=bool)
            for bits, need in rules:
                ok |= (dist <= bits) & (s >= need)
            out += [(int(i), int(j), float(x), int(d)) for i, j, x, d in zip(r[ok], c[ok], s[ok], dist[ok])]
    # the index path may find a pair from both of its images: keep it once
    return sorted({(i, j): (i, j, c, d) for i, j, c, d in out}.values())


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
