"""Grad-CAM finds the evidence where it is, on a model whose evidence we placed ourselves."""

import numpy as np
import torch

from imgcls.vision.gradcam import colourise, gradcam, overlay


class Spotter(torch.nn.Module):
    """A timm-shaped toy: features are the red channel minus the blue one; the head pools and scores."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.head.bias.zero_()

    def forward_features(self, x):
        return (x[:, :1] - x[:, 2:3]) * 4

    def forward_head(self, feats):
        return self.head(feats.mean(dim=(2, 3)))


def test_heat_map_peaks_where_the_evidence_is():
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 4:12, 20:28] = 1.0  # a red patch top right: the evidence for class 0
    heat, index = gradcam(Spotter(), x)
    assert index == 0 and heat.shape == (32, 32)
    assert heat.max() == 1.0 and heat.min() >= 0.0
    assert heat[4:12, 20:28].mean() > 0.9 and heat[20:, :12].mean() < 0.05


def test_heat_map_for_a_chosen_class_points_elsewhere():
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 4:12, 20:28] = 1.0
    x[0, 2, 20:28, 4:12] = 0.5  # a weaker blue patch bottom left: the evidence for class 1
    heat, index = gradcam(Spotter(), x, class_index=1)
    assert index == 1
    assert heat[20:28, 4:12].mean() > 0.9 and heat[4:12, 20:28].mean() < 0.05


def test_overlay_keeps_the_image_shape_and_type():
    image = np.full((16, 16, 3), 128, np.uint8)
    heat = np.linspace(0, 1, 256).reshape(16, 16)
    out = overlay(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert tuple(colourise(np.array(1.0))) != tuple(colourise(np.array(0.0)))


def test_a_batch_gives_each_image_its_own_map_for_its_own_class():
    from imgcls.vision.gradcam import gradcam_batch

    x = torch.zeros(3, 3, 32, 32)
    x[0, 0, 4:12, 20:28] = 1.0  # red top right: class 0
    x[1, 2, 20:28, 4:12] = 0.5  # blue bottom left: class 1
    x[2, 0, 20:28, 20:28] = 1.0  # red bottom right, asked about class 0
    heats, indices = gradcam_batch(Spotter(), x, [0, 1, 0])
    assert indices == [0, 1, 0] and heats.shape == (3, 32, 32)
    for n in range(3):  # one pass for the batch, yet each map is the one its image gets alone
        alone, _ = gradcam(Spotter(), x[n:n + 1], [0, 1, 0][n])
        assert np.allclose(heats[n], alone, atol=1e-6)
    assert heats[1][20:28, 4:12].mean() > 0.9 and heats[2][20:28, 20:28].mean() > 0.9
    _, chosen = gradcam_batch(Spotter(), x)  # no classes given: each image's own top class
    assert chosen == [0, 1, 0]


def test_the_legend_bar_runs_through_the_overlay_palette():
    from imgcls.vision.gradcam import colour_bar

    bar = colour_bar(width=50, height=4)
    assert bar.shape == (4, 50, 3) and bar.dtype == np.uint8
    assert tuple(bar[0, 0]) == tuple(colourise(np.array(0.0)))  # left: no evidence, blue
    assert tuple(bar[0, -1]) == tuple(colourise(np.array(1.0)))  # right: the most, red
    assert bar[0, -1, 0] > 200 and bar[0, 0, 2] > 100
