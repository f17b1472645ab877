"""Inside the network: filters, feature maps per stage, and the pretrained backbone's ImageNet guess."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from imgcls.vision import inside
from imgcls.vision.imgcache import to_tensor
from imgcls.vision.models import BACKBONES, create_model, data_config


@pytest.fixture(scope="module")
def lite0():
    return create_model("efficientnet_lite0", 1000).eval()


def test_filter_grid_shows_every_first_layer_filter(lite0):
    conv = inside.first_layer(lite0)
    grid = inside.filter_grid(lite0, cell=10, columns=8, gap=2)
    rows = -(-conv.out_channels // 8)
    assert grid.shape == (rows * 12 + 2, 8 * 12 + 2, 3) and grid.dtype == np.uint8
    # the cell of filter 0 shows its kernel: not the flat grey of an all-zero filter
    cell = grid[2:12, 2:12]
    assert cell.std() > 5


def test_feature_maps_shrink_with_depth_and_pick_the_most_active_channels(lite0):
    dcfg = data_config(lite0)
    image = inside.prepare(Image.fromarray(skdata.chelsea()), dcfg)
    maps = inside.feature_maps(lite0, image, dcfg, top=4)
    assert list(maps) == ["early", "middle", "late"]
    sides = [maps[s]["shape"][-1] for s in maps]
    assert sides[0] > sides[1] > sides[2]
    for stage in maps.values():
        assert len(stage["maps"]) == 4 and stage["maps"][0].dtype == np.uint8
        assert stage["strength"] == sorted(stage["strength"], reverse=True)
        assert stage["note"]
    # the strength ranking matches the activations computed directly
    acts = inside.stage_outputs(lite0, image, dcfg)["late"].clamp(min=0).mean(dim=(1, 2))
    assert maps["late"]["channels"][0] == int(torch.argmax(acts))


def test_imagenet_top5_of_a_cat_photo(lite0):
    dcfg = data_config(lite0)
    top = inside.imagenet_top(lite0, inside.prepare(Image.fromarray(skdata.chelsea()), dcfg), dcfg)
    assert len(top) == 5 and top[0][1] >= top[-1][1]
    assert "cat" in top[0][0].lower()
    assert len(inside.imagenet_names()) == 1000


def test_top5_refuses_a_model_with_a_new_head():
    model = create_model("efficientnet_lite0", 3).eval()
    dcfg = data_config(model)
    with pytest.raises(ValueError, match="ImageNet head"):
        inside.imagenet_top(model, np.zeros((224, 224, 3), np.uint8), dcfg)


def test_maps_are_shown_at_the_input_size_and_smoothly():
    m = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    big = inside.enlarge(m, 224)
    assert big.shape == (224, 224) and big.dtype == np.uint8
    assert len(np.unique(big)) > 2  # bilinear: shades between the cells, not blocks of static
    blocky = inside.enlarge(m, 224, smooth=False)
    assert set(np.unique(blocky)) == {0, 255}


def test_one_hot_pixel_does_not_turn_the_rest_of_a_map_black(lite0, monkeypatch):
    act = torch.ones(2, 16, 16)
    act[0, 3, 3] = 1000.0  # one outlier; every other pixel is as active as the next
    monkeypatch.setattr(inside, "stage_outputs", lambda *a: {"early": act})
    maps = inside.feature_maps(lite0, np.zeros((224, 224, 3), np.uint8), data_config(lite0), top=2)
    assert np.median(maps["early"]["maps"][0]) > 200


def test_each_stage_says_what_to_look_for(lite0):
    dcfg = data_config(lite0)
    maps = inside.feature_maps(lite0, inside.prepare(Image.fromarray(skdata.chelsea()), dcfg), dcfg, top=2)
    assert all(len(stage["look_for"]) > 40 for stage in maps.values())
    assert "beside the photo" in maps["early"]["look_for"]


# --- every backbone on offer, with random weights at its own input size ------------------------------------

@pytest.fixture(scope="module", params=list(BACKBONES))
def backbone(request):
    """A random-weight model of each backbone, its data config and the cat photo prepared for it."""
    torch.manual_seed(0)
    model = create_model(request.param, 2, pretrained=False).eval()
    dcfg = data_config(model)
    return model, dcfg, inside.prepare(Image.fromarray(skdata.chelsea()), dcfg)


def _is_transformer(model) -> bool:
    return getattr(model, "num_prefix_tokens", None) is not None


def test_every_backbone_shows_three_stages_of_maps(backbone):
    model, dcfg, image = backbone
    maps = inside.feature_maps(model, image, dcfg, top=3)
    assert list(maps) == ["early", "middle", "late"]
    for stage in maps.values():
        channels, h, w = stage["shape"]
        assert len(stage["maps"]) == 3 and all(m.shape == (h, w) and m.dtype == np.uint8 for m in stage["maps"])
        assert max(int(m.max()) for m in stage["maps"]) > 0 and stage["note"] and stage["look_for"]
    sides = [maps[s]["shape"][-1] for s in maps]
    if _is_transformer(model):  # one patch grid from the first block to the last, and the notes say so
        grid = image.shape[0] // model.patch_embed.patch_size[0]
        assert sides == [grid] * 3
        assert all("patches" in s["note"] and "shrink" in maps["early"]["note"] for s in maps.values())
    else:
        assert sides[0] > sides[1] > sides[2] and "patches" not in maps["middle"]["note"]


def test_every_backbone_s_stages_are_the_outputs_of_its_own_layers(backbone):
    """The maps are what the named layers (timm's feature_info) give in an ordinary forward pass."""
    model, dcfg, image = backbone
    picked = inside.stage_indices(model)
    assert picked["early"] < picked["middle"] < picked["late"] == len(model.feature_info) - 1
    caught, hooks = {}, []
    for stage, i in picked.items():
        layer = model.get_submodule(model.feature_info[i]["module"])
        hooks.append(layer.register_forward_hook(lambda _m, _i, out, s=stage: caught.__setitem__(s, out[0])))
    try:
        with torch.no_grad():
            model(to_tensor(image[None], dcfg["mean"], dcfg["std"], "cpu"))
    finally:
        for h in hooks:
            h.remove()
    shown = inside.stage_outputs(model, image, dcfg)
    for stage, out in caught.items():
        info = model.feature_info[picked[stage]]
        if out.ndim == 2:  # a transformer block's tokens: the patches after the class token, row by row
            grid = image.shape[0] // model.patch_embed.patch_size[0]
            out = out[model.num_prefix_tokens:].T.reshape(-1, grid, grid)
        assert shown[stage].shape == out.shape and out.shape[0] == info["num_chs"]
        assert out.shape[-1] == image.shape[1] // info["reduction"]
        assert torch.allclose(shown[stage], out, atol=1e-4)


def test_every_backbone_s_first_layer_filters_make_a_grid(backbone):
    model, _, _ = backbone
    conv = inside.first_layer(model)
    assert conv.in_channels == 3  # the layer that looks at raw pixels (a transformer's patch embedding)
    grid = inside.filter_grid(model, cell=8, columns=8, gap=1)
    assert grid.shape == (-(-conv.out_channels // 8) * 9 + 1, 8 * 9 + 1, 3) and grid[1:9, 1:9].std() > 5
