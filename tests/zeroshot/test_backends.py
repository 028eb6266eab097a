"""Both CLIP backends through their real loaders, from local files only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medvit.errors import UserError
from medvit.weights import RANDOM_INIT
from medvit.zeroshot.backends import bundled_clip_tokenizer, load_backend


def test_bundled_tokenizer_matches_open_clip_simple_tokenizer() -> None:
    from open_clip.tokenizer import SimpleTokenizer

    tok, ref = bundled_clip_tokenizer(), SimpleTokenizer()
    assert len(tok) == 49408
    for text in ("a chest x-ray showing pleural effusion", "No Pneumothorax!", "a satellite image of farmland"):
        assert tok(text)["input_ids"] == [ref.sot_token_id, *ref.encode(text), ref.eot_token_id]


def test_transformers_local_dir_matches_direct_clipmodel(tiny_clip_dir: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    b = load_backend("transformers", str(tiny_clip_dir))
    assert b.weights == f"local:{tiny_clip_dir.resolve()}"
    assert (b.preprocess.size, b.preprocess.crop, b.preprocess.interpolation) == (32, 32, "bicubic")
    ref = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    proc = CLIPProcessor.from_pretrained(tiny_clip_dir)
    x = torch.rand(3, 3, 32, 32)
    with torch.inference_mode():
        want_img = ref.get_image_features(pixel_values=x).pooler_output
        tok = proc.tokenizer(["a photo of a cat", "no cat"], padding=True, return_tensors="pt")
        want_txt = ref.get_text_features(**tok).pooler_output
    torch.testing.assert_close(b.encode_images(x), want_img)
    torch.testing.assert_close(b.encode_texts(["a photo of a cat", "no cat"]), want_txt)
    assert b.logit_scale == pytest.approx(float(ref.logit_scale.detach().exp()))
    assert b.embed_dim == 16


def test_transformers_hub_id_from_offline_cache(tiny_clip_dir: Path, hub_cache) -> None:
    hub_cache("acme/tiny-clip", tiny_clip_dir)
    b = load_backend("transformers", "acme/tiny-clip")
    assert b.weights == "hub:acme/tiny-clip"
    assert "@0123456789abcdef0123456789abcdef01234567:" in b.fingerprint  # the snapshot commit
    assert b.encode_images(torch.zeros(1, 3, 32, 32)).shape == (1, 16)


def test_open_clip_local_dir_loads_saved_weights(tiny_open_clip_dir: Path) -> None:
    from safetensors.torch import load_file

    b = load_backend("open_clip", f"local-dir:{tiny_open_clip_dir}")
    assert b.weights == f"local:{tiny_open_clip_dir.resolve()}"
    saved = load_file(str(tiny_open_clip_dir / "open_clip_model.safetensors"))
    for k, v in b.model.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    # the model's own preprocess_cfg (mean/std from open_clip_config.json, size from the config)
    assert (b.preprocess.size, b.preprocess.mean, b.preprocess.std) == (32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    emb = b.encode_texts(["a satellite image of water", "a satellite image with no water"])
    assert emb.shape == (2, 16) and not torch.allclose(emb[0], emb[1])
    # a plain folder path works like local-dir:
    assert load_backend("open_clip", str(tiny_open_clip_dir)).weights == b.weights


def test_open_clip_hf_hub_from_offline_cache(tiny_open_clip_dir: Path, hub_cache) -> None:
    hub_cache("acme/tiny-open-clip", tiny_open_clip_dir)
    b = load_backend("open_clip", "hf-hub:acme/tiny-open-clip")
    assert b.weights == "hub:acme/tiny-open-clip"
    ref = load_backend("open_clip", f"local-dir:{tiny_open_clip_dir}")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(b.encode_images(x), ref.encode_images(x))


def test_open_clip_builtin_arch_with_local_checkpoint(tiny_open_clip_dir: Path, tmp_path: Path) -> None:
    # RemoteCLIP-style: a registered architecture name + a separate checkpoint file
    import json

    import open_clip

    cfg = json.loads((tiny_open_clip_dir / "open_clip_config.json").read_text())["model_cfg"]
    (tmp_path / "medvit-tiny-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "medvit-tiny-test.json")
    ckpt = tiny_open_clip_dir / "open_clip_model.safetensors"
    b = load_backend("open_clip", "medvit-tiny-test", str(ckpt))
    assert b.weights == f"local:{ckpt.resolve()}"
    ref = load_backend("open_clip", f"local-dir:{tiny_open_clip_dir}")
    torch.testing.assert_close(b.model.visual.conv1.weight, ref.model.visual.conv1.weight)
    with pytest.raises(UserError, match="not a file and not a pretrained tag"):
        load_backend("open_clip", "medvit-tiny-test", "no-such-tag")


@pytest.mark.parametrize("backend,model,weights", [
    ("transformers", "acme/not-downloaded", None),
    ("open_clip", "hf-hub:acme/not-downloaded", None),
    ("open_clip", "ViT-B-32", "hf-hub:acme/RemoteCLIP/RemoteCLIP-ViT-B-32.pt"),
])
def test_missing_weights_is_a_clear_user_error(backend: str, model: str, weights: str | None, empty_hub: Path) -> None:
    with pytest.raises(UserError) as err:
        load_backend(backend, model, weights, allow_random_init=False)
    msg = str(err.value)
    assert model in msg and "Hugging Face cache" in msg and "allow_random_init" in msg


def test_missing_open_clip_weights_in_local_dir(tiny_open_clip_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    (folder / "open_clip_config.json").write_bytes((tiny_open_clip_dir / "open_clip_config.json").read_bytes())
    with pytest.raises(UserError, match="no checkpoint"):
        load_backend("open_clip", f"local-dir:{folder}")


@pytest.mark.parametrize("backend", ["transformers", "open_clip"])
def test_random_init_fallback_is_explicit(backend: str, empty_hub: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = "acme/not-downloaded" if backend == "transformers" else "hf-hub:acme/not-downloaded"
    b = load_backend(backend, model, allow_random_init=True, seed=7)
    assert b.weights == RANDOM_INIT and "random-init" in b.fingerprint and "seed7" in b.fingerprint
    assert "RANDOMLY INITIALISED" in caplog.text
    assert b.preprocess.size == b.preprocess.crop == 112  # the cheap ViT-B/32 fallback, whatever was configured
    assert b.encode_images(b.preprocess(torch.rand(1, 3, 64, 64))).shape == (1, 512)
    emb = b.encode_texts(["no effusion", "pleural effusion"])
    assert emb.shape == (2, 512) and torch.isfinite(emb).all()
