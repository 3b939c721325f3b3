"""First loads of a packaged model in two processes at once: whichever finishes first keeps the
cache, and the other never removes files a process may be reading."""

import sys
import types
from pathlib import Path

import pytest

import oracle.model_loading as model_loading
from oracle.model_loading import ModelSource

SOURCE = ModelSource(package="fake-model", package_version="1.0", file="model.gguf")


class _Saved:
    """Stands in for the model and tokenizer transformers would dequantise: save_pretrained
    writes a file, and `on_save` lets a test act in between (another process finishing)."""

    on_save = staticmethod(lambda directory: None)

    def __init__(self):
        self.config = types.SimpleNamespace()
        self.hf_quantizer = object()

    def save_pretrained(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "config.json").write_text("{}")
        self.on_save(directory)


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    gguf = tmp_path / "package" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"weights")
    monkeypatch.setenv("DEPTHBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_loading, "locate_package_file", lambda source: gguf)
    auto = types.SimpleNamespace(from_pretrained=lambda *args, **kwargs: _Saved())
    monkeypatch.setitem(sys.modules, "transformers",
                        types.SimpleNamespace(AutoModelForCausalLM=auto, AutoTokenizer=auto))
    return tmp_path / "cache" / "models"


def test_a_load_that_finishes_second_keeps_the_first_ones_cache(fake_package, monkeypatch):
    def other_process_finishes(staging):
        winner = fake_package / Path(staging).name.split(".tmp")[0]
        winner.mkdir(parents=True, exist_ok=True)
        (winner / "config.json").write_text("{}")
        (winner / "being-read").write_text("another process reads this folder")

    monkeypatch.setattr(_Saved, "on_save", staticmethod(other_process_finishes))
    directory = model_loading._dequantised_cache(SOURCE)
    assert (directory / "being-read").exists()  # the winner's folder was left alone
    assert [path.name for path in fake_package.iterdir()] == [directory.name]  # no staging folder left


def test_a_first_load_replaces_a_folder_left_without_its_config(fake_package):
    directory = model_loading._dequantised_cache(SOURCE)
    (directory / "config.json").unlink()
    (directory / "stale").write_text("")
    assert model_loading._dequantised_cache(SOURCE) == directory
    assert (directory / "config.json").exists() and not (directory / "stale").exists()


def test_a_file_assembled_from_parts_replaces_what_a_killed_run_left_under_its_name(tmp_path, monkeypatch):
    import importlib.util
    import os

    def assemble(path):  # like the Gemma package: refuses to overwrite a file it did not make
        if Path(path).exists():
            raise FileExistsError(path)
        Path(path).write_bytes(b"whole file")

    monkeypatch.setenv("DEPTHBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "parts_package", types.SimpleNamespace(assemble=assemble))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: types.SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    source = ModelSource(package="parts-package", package_version="1.0", file="model.gguf",
                         assemble="parts_package:assemble")
    leftover = tmp_path / "cache" / "gguf" / f"model.gguf.tmp{os.getpid()}"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"torn")
    target = model_loading.locate_package_file(source)
    assert target.read_bytes() == b"whole file" and not leftover.exists()
