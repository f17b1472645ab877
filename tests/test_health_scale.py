"""Health checks at scale: the index search finds what the exact one does, blocks change nothing, Stop is
honoured between blocks and folds, and draft-mode thumbnails look like fully decoded ones."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgcls.health import labelerrors, similarity
from imgcls.ingest.images import load_rgb
from imgcls.jobs import Cancelled
from imgcls.jobs.runner import stop_token
from imgcls.vision import thumbs


def planted(n: int = 3000, dim: int = 128, pairs: int = 150, seed: int = 0):
    """Random unit vectors with `pairs` planted pairs at cosines 0.75…1 (hashes equal for two thirds of
    them, unrelated for the rest), and random 256-bit hashes."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    hashes = rng.integers(0, 2**63, size=(n, 4), dtype=np.int64).astype(np.uint64)
    idx = rng.choice(n, size=2 * pairs, replace=False).reshape(-1, 2)
    for k, (i, j) in enumerate(idx):
        cos = rng.uniform(0.75, 1.0)
        u = rng.standard_normal(dim).astype(np.float32)
        u -= (u @ emb[i]) * emb[i]
        emb[j] = cos * emb[i] + np.sqrt(1 - cos * cos) * u / np.linalg.norm(u)
        if k % 3:
            hashes[j] = hashes[i]
    return emb, hashes


def full_matrix_pairs(emb, hashes, rules=similarity.NEAR_RULES):
    """The reference: the whole N×N similarity and hash-distance matrices at once (small N only)."""
    unit = similarity.normalise(emb)
    sims = unit @ unit.T
    dist = similarity.hamming(hashes, hashes)
    ok = np.zeros(sims.shape, dtype=bool)
    for bits, need in rules:
        ok |= (dist <= bits) & (sims >= need)
    rows, cols = np.nonzero(np.triu(ok, k=1))
    return [(int(i), int(j)) for i, j in zip(rows, cols)]


def test_blockwise_search_equals_the_full_matrix(monkeypatch):
    emb, hashes = planted()
    reference = full_matrix_pairs(emb, hashes)
    assert len(reference) >= 90  # the planted pairs whose hashes agree, all above the lowest rule's cosine
    monkeypatch.setattr(similarity, "BLOCK_BYTES", 4 * len(emb) * 37)  # 37 rows a block: many uneven blocks
    found = similarity.near_pairs(emb, hashes, index=False)
    assert [(i, j) for i, j, *_ in found] == reference
    unit = similarity.normalise(emb)
    for i, j, cos, dist in found:
        assert cos == pytest.approx(float(unit[i] @ unit[j]), abs=1e-5)
        assert dist == int(np.bitwise_count(hashes[i] ^ hashes[j]).sum())


def test_images_that_all_look_alike_are_compared_a_bounded_number_of_pairs_at_a_time(monkeypatch):
    """Every pair over the lowest rule's cosine (as photos of one product on white might be): the candidates
    are looked at PAIRS at a time, never all of a block's at once, and the pairs found are the same."""
    rng = np.random.default_rng(1)
    centre = rng.standard_normal(64).astype(np.float32)
    emb = centre + 0.15 * rng.standard_normal((600, 64)).astype(np.float32)  # cosines about 0.98
    hashes = rng.integers(0, 2**63, size=(600, 4), dtype=np.int64).astype(np.uint64)
    hashes[1::7] = hashes[0::7][:len(hashes[1::7])]  # some hashes agree: those pairs are copies
    reference = full_matrix_pairs(emb, hashes)
    assert len(reference) >= 80
    seen = []
    real = similarity._exact_blocks

    def recorded(*a, **k):
        for chunk in real(*a, **k):
            seen.append(len(chunk[0]))
            yield chunk
    monkeypatch.setattr(similarity, "_exact_blocks", recorded)
    monkeypatch.setattr(similarity, "PAIRS", 5000)
    found = similarity.near_pairs(emb, hashes, index=False)
    assert [(i, j) for i, j, *_ in found] == reference
    assert sum(seen) == 600 * 599 // 2 and max(seen) <= 5000 and len(seen) > 30


def test_index_search_finds_the_same_pairs_as_the_exact_one(monkeypatch):
    emb, hashes = planted()
    exact = similarity.near_pairs(emb, hashes, index=False)
    monkeypatch.setattr(similarity, "BLOCK_BYTES", 4 * len(emb) * 500)
    indexed = similarity.near_pairs(emb, hashes, index=True)
    assert [(i, j, d) for i, j, _, d in indexed] == [(i, j, d) for i, j, _, d in exact]
    assert [c for *_, c, _ in indexed] == pytest.approx([c for *_, c, _ in exact], abs=1e-4)


def test_the_index_is_used_past_the_switch_size(monkeypatch):
    emb, hashes = planted(n=600, pairs=20)
    used = []
    real = similarity._index_blocks
    monkeypatch.setattr(similarity, "_index_blocks", lambda *a, **k: used.append(1) or real(*a, **k))
    monkeypatch.setattr(similarity, "EXACT_MAX", 1000)
    similarity.near_pairs(emb, hashes)
    assert used == []
    monkeypatch.setattr(similarity, "EXACT_MAX", 500)
    similarity.near_pairs(emb, hashes)
    assert used == [1]


@pytest.mark.parametrize("index", [False, True])
def test_search_stops_between_blocks(monkeypatch, index):
    emb, hashes = planted(n=2000, pairs=20)
    monkeypatch.setattr(similarity, "BLOCK_BYTES", 4 * len(emb) * 100)  # 20 blocks
    told = []
    with stop_token() as token, pytest.raises(Cancelled):
        similarity.near_pairs(emb, hashes, index=index, progress=lambda f, t: (told.append(f), token.set()))
    assert told == [0.05]  # the first block's progress, and not one block more


def labelled(n: int = 600, classes: int = 4, dim: int = 64, seed: int = 0):
    """Embeddings around one centre per class, with labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim))
    y = rng.integers(0, classes, n)
    return (centres[y] + 1.5 * rng.standard_normal((n, dim))).astype(np.float32), y


def test_out_of_sample_probabilities_match_scikit_learns_cross_validation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    emb, y = labelled()
    head = make_pipeline(Normalizer(), LogisticRegression(max_iter=1000, C=labelerrors.HEAD_C))
    splitter = StratifiedKFold(n_splits=labelerrors.FOLDS, shuffle=True, random_state=0)
    reference = cross_val_predict(head, emb, y, cv=splitter, method="predict_proba")
    ours = labelerrors.out_of_sample_probs(emb, y)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-3


def test_label_check_reports_progress_and_stops_between_folds():
    emb, y = labelled()
    told = []
    labelerrors.out_of_sample_probs(emb, y, progress=lambda f, t: told.append((f, t)))
    assert [f for f, _ in told] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert told[0][1] == "Checking labels: part 1 of 5"
    calls = []
    with stop_token() as token, pytest.raises(Cancelled):
        labelerrors.rank([str(v) for v in y], emb, progress=lambda f, t: (calls.append(f), f >= 0.2 and token.set()))
    assert calls == [0.0, 0.2]  # asked to stop during the second fold: no third one starts


# --- thumbnails of large JPEGs ---------------------------------------------------------------------


def big_jpeg(path, size=(4000, 3000), exif=None):
    """A 12 MP photo-like JPEG: smooth gradients, shapes with sharp edges and fine noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([255 * xx / w, 255 * yy / h, 128 + 100 * np.sin(xx / 150) * np.cos(yy / 90)], axis=-1)
    rgb += np.random.default_rng(0).normal(0, 12, rgb.shape).astype(np.float32)
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k in range(12):
        x, y = 300 * k + 50, 200 + 180 * (k % 5)
        draw.ellipse((x, y, x + 500, y + 400), fill=(20 * k, 255 - 20 * k, 60))
        draw.line((0, 250 * k, w, 250 * k + 600), fill=(255, 255, 255), width=9)
    img.save(path, format="JPEG", quality=90, **({"exif": exif.tobytes()} if exif else {}))


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "ws"))
    return tmp_path


def fastest(make, runs: int = 3) -> float:
    """The least processor time of this thread over a few runs of make(): other work on the machine disturbs
    it least, and threads an earlier test left working in this process (a converter's runtime) not at all;
    Pillow decodes in the calling thread."""
    times = []
    for _ in range(runs):
        start = time.thread_time()
        make()
        times.append(time.thread_time() - start)
    return min(times)


def test_draft_thumbnail_of_a_large_jpeg_looks_like_the_full_decode(home, monkeypatch):
    big_jpeg(home / "photo.jpg")
    small = thumbs.load_small(home / "photo.jpg", 128)
    assert 128 <= min(small.size) and small.size[0] <= 4000 / 8  # decoded at 1/8 scale, not in full
    drafted = thumbs.thumbnail_path(home, "photo.jpg", "b" * 64, size=128)
    monkeypatch.setattr(thumbs, "load_small", lambda path, size: load_rgb(path))  # the full decode
    full = thumbs.thumbnail_path(home, "photo.jpg", "c" * 64, size=128)
    with Image.open(drafted) as a, Image.open(full) as b:
        diff = np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))
    assert diff.mean() < 2.0, f"mean difference {diff.mean():.2f} levels of 255"


def test_draft_mode_keeps_the_exif_orientation(home):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    big_jpeg(home / "turned.jpg", size=(1600, 1200), exif=exif)
    small = thumbs.load_small(home / "turned.jpg", 128)
    assert small.width < small.height and small.size == load_rgb(home / "turned.jpg").reduce(8).size


def test_other_formats_and_broken_jpegs_decode_as_before(home):
    Image.new("RGB", (640, 480), (10, 200, 30)).save(home / "flat.png")
    assert thumbs.load_small(home / "flat.png", 64).size == (640, 480)
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(buf, format="JPEG")
    (home / "cut.jpg").write_bytes(buf.getvalue()[:300])
    with pytest.raises(Exception, match="corrupt|truncated"):
        thumbs.load_small(home / "cut.jpg", 64)
