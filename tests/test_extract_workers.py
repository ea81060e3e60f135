"""Image / audio decoding in DataLoader worker processes during feature extraction (issue 17): the same features as
decoding in the main process, in the input order; a bad file still fails in one line naming its row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graftkit.backbones import load_backbone
from graftkit.errors import DataError
from graftkit.features.extract import default_workers, extract_features


@pytest.fixture(scope="module")
def convnext_dir(tmp_path_factory) -> Path:
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    folder = tmp_path_factory.mktemp("tiny-convnext-workers")
    torch.manual_seed(0)
    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)).save_pretrained(
        folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(23):  # sizes differ, so the length sort reorders them
        size = (int(rng.integers(16, 64)), int(rng.integers(16, 64)))
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_workers_give_the_main_process_features_in_order(convnext_dir, images):
    backbone = load_backbone(str(convnext_dir))
    inline = extract_features(backbone, images, batch_size=4, progress=False, workers=0)
    pooled = extract_features(backbone, images, batch_size=4, progress=False, workers=2)
    assert np.array_equal(inline, pooled)
    alone = extract_features(backbone, images[5:6], progress=False, workers=2)
    assert np.allclose(alone[0], inline[5], atol=1e-5)


def test_a_bad_file_in_a_worker_is_one_line_naming_the_row(convnext_dir, images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    backbone = load_backbone(str(convnext_dir))
    with pytest.raises(DataError) as error:
        extract_features(backbone, [*images[:8], str(broken), *images[8:]], batch_size=4, progress=False,
                         workers=2, where=lambda i: f"row {i + 1}")
    assert str(error.value).startswith("row 9") and "\n" not in str(error.value)


def test_text_is_tokenised_ahead_not_decoded_in_workers(tiny_bert_dir):
    assert default_workers(load_backbone(str(tiny_bert_dir))) == 0
