import pytest
import torch

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics.curricularface import IRBackbone, load_curricularface


def test_ir101_layout_matches_tface_state_dict():
    with torch.device("meta"):
        model = IRBackbone()
    state = model.state_dict()
    assert len(model.body) == 49
    assert state["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert "body.0.shortcut_layer.0.weight" not in state  # 64 -> 64: max-pool shortcut, no parameters
    assert state["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    assert state["body.48.res_layer.4.weight"].shape == (512, 512, 3, 3)
    assert state["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert "output_layer.4.running_mean" in state and "output_layer.4.weight" not in state


def test_small_backbone_forward_is_512d():
    model = IRBackbone(units=(1, 1, 1, 1), channels=(8, 8, 16, 16)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 112, 112) * 2 - 1)
    assert out.shape == (2, 512) and torch.isfinite(out).all()


@pytest.mark.slow
def test_load_roundtrip_and_forward(tmp_path):
    torch.manual_seed(0)
    source = IRBackbone().eval()
    path = tmp_path / "glint360k_curricular_face_r101_backbone.bin"
    torch.save(source.state_dict(), path)
    model = load_curricularface(path)
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))
        assert model(x).shape == (2, 512)
    path.unlink()  # 260 MB: do not keep it in pytest's retained temp folders


def test_missing_and_wrong_weights(tmp_path):
    with pytest.raises(IngredientsError, match="CurricularFace weights missing"):
        load_curricularface(tmp_path / "nope.bin")
    bad = tmp_path / "bad.bin"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(IngredientsError, match="not a CurricularFace"):
        load_curricularface(bad)
