"""Calibration token ids: shipped for the default problems, checked against tables for the rest.

Token ids are not a function of the data file and the model file alone: the tokenizer library
(transformers, tokenizers) turns text into ids, and its releases have tokenised the same
passages differently. So:

- A problem whose ids are shipped reads them instead of tokenising (a library upgrade cannot
  change its losses), and its spec names the token file and its sha256 (`spec["data"]["tokens"]`),
  which the fingerprint covers.
- Every other problem tokenises; the digest of its ids (`PreparedObjective.token_digest`) is
  stored in its table, and every live path compares it with the table's before any evaluation is
  stored or compared (`refuse_other_tokens`).

A token file `problems/data/tokens-<model>-<objective>.json.gz` is one JSON object (sorted keys,
no whitespace; gzip without name or timestamp, so its bytes follow from its content): provenance
(`model`, `model_sha256`, `data` {file, sha256}, `seed`, `needs_bos`, `bos_token_id`) and the ids,
all without BOS (the objective adds it):

- ppl: `stream`, the text-token stream the windows are cut from (passages in the seeded order,
  each followed by EOS), as long as the default windows need;
- margin: `items`, the sampled items in order, each {"id", "contexts", "continuations"}: per
  option its context ids and its continuation ids, tokenised separately.

A file serves every problem of its model and objective whose calibration samples are a prefix of
its own (ppl: windows × text tokens per window ≤ the stream, so fewer or shorter windows; margin:
fewer items), with the same model file, data file, seed, sampling and BOS setting. Files are made
by `build_token_file` (`python -m bench data rebuild` writes missing ones, `data check` compares
the shipped ids with what the tokenizer gives now and with the tables' token digests).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from oracle.errors import DataError, TableError, TokenMismatch
from oracle.fingerprint import file_digest
from problems.calibration_data import DATA_DIR

FORMAT = 1
#: Models whose default problems ship their token ids.
TOKEN_MODELS = ("smollm2-135m", "gemma3-270m")
TOKENIZER_LIBRARIES = ("transformers", "tokenizers")
#: Objectives scored on the windows of one text-token stream (the ppl file's); the others are
#: scored on multiple-choice items.
WINDOWED = ("ppl", "kl")
#: The objectives with token files of their own.
TOKEN_FILE_OBJECTIVES = ("ppl", "margin")


def token_file_name(model: str, objective: str) -> str:
    return f"tokens-{model}-{objective}.json.gz"


def shipped_tokens(model: str, source: Any, settings: dict[str, Any], data: dict[str, str]) -> dict[str, str] | None:
    """{"file", "sha256"} of the shipped token file that serves the problem of named model
    `model` (its ModelSource `source`, objective `settings`, data {file, sha256}), or None
    when there is none (then the problem tokenises)."""
    # The windowed objectives (ppl, kl) share one text-token stream: the ppl file.
    objective = "ppl" if settings["name"] in WINDOWED else settings["name"]
    path = DATA_DIR / token_file_name(model, objective)
    if not path.is_file():
        return None
    digest, content = _load(path)
    same_origin = (
        content.get("format") == FORMAT
        and content.get("objective") == objective
        and content.get("model_sha256") == source.sha256
        and content.get("data") == {"file": data["file"], "sha256": data["sha256"]}
        and content.get("seed") == settings["seed"]
        and content.get("needs_bos") == source.needs_bos
        and "bos" not in settings
    )
    if not same_origin:
        return None
    if objective == "ppl":
        covered = settings["windows"] * (settings["window_tokens"] - int(source.needs_bos)) <= len(content["stream"])
    else:
        covered = (settings["items"] <= len(content["items"])
                   and settings.get("stratify_by_task") == content.get("stratify_by_task"))
    return {"file": path.name, "sha256": digest} if covered else None


def spec_with_shipped_tokens(table: Any) -> dict[str, Any]:
    """The spec a named model problem's `table` has once a token file serves it: its spec with
    the file named (hence another fingerprint), after checking that the file's ids are those the
    table's rows were built on (its token digest). Raises TableError / TokenMismatch otherwise."""
    from oracle.model_loading import ModelSource
    from problems.model_problems import MODELS, spec_fingerprint

    spec = table.spec
    model = str(spec.get("name", "")).partition("/")[0]
    if model not in MODELS or "data" not in spec:
        raise TableError(f"table {table.path} is not of a named model's problem: no token file can serve it")
    if spec["data"].get("tokens"):
        raise TableError(f"table {table.path} already names token file {spec['data']['tokens']['file']}")
    tokens = shipped_tokens(model, ModelSource(**spec["model"]), spec["objective"], spec["data"])
    if tokens is None:
        raise TableError(f"no shipped token file serves the problem of table {table.path}")
    stored = _attribute(table, "token_digest")
    if stored is None:
        raise TableError(f"table {table.path} records no token digest: which ids its rows were built on is unknown")
    rekeyed = {**spec, "data": {**spec["data"], "tokens": tokens}}
    rekeyed["fingerprint"] = spec_fingerprint(rekeyed)
    digest = prepare_calibration(rekeyed)[1].token_digest
    if digest != stored:
        raise TokenMismatch(f"token file {tokens['file']} holds other ids (digest {digest[:16]}) than table "
                            f"{table.path} was built on ({str(stored)[:16]})")
    return rekeyed


def read_token_file(path: str | Path) -> dict[str, Any]:
    """The content of a token file."""
    return _load(Path(path))[1]


def encode_token_file(content: dict[str, Any]) -> bytes:
    """The bytes of a token file: a function of `content` alone."""
    buffer = io.BytesIO()
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        out.write(text.encode("utf-8"))
    return buffer.getvalue()


def prepare_calibration(spec: dict[str, Any], tokenizer: Any = None, batch_tokens: int | None = None):
    """(objective, prepared token batches) of a model problem `spec`: from its shipped token
    file when the spec names one (checked against its sha256), else by tokenising with
    `tokenizer` (default: the model's, loaded without its weights); batches of `batch_tokens`
    tokens (default: the CPU sizes of `oracle.devices`)."""
    from oracle.devices import CPU_BATCH_TOKENS

    from oracle.model_loading import ModelSource, load_tokenizer
    from oracle.objectives import ChoiceObjective, DivergenceObjective, MarginObjective, PerplexityObjective
    from problems.calibration_data import load_items, load_passages, sample_items, shipped_path

    source = ModelSource(**spec["model"])
    settings = spec["objective"]
    data_file = shipped_path(spec["data"]["file"])
    content = _shipped_content(spec["data"]["tokens"]) if spec["data"].get("tokens") else None
    if content is None and tokenizer is None:
        tokenizer = load_tokenizer(source)
    if settings["name"] in WINDOWED:
        windowed = DivergenceObjective if settings["name"] == "kl" else PerplexityObjective
        objective = windowed(settings["windows"], settings["window_tokens"], settings["seed"],
                             source.needs_bos, batch_tokens or CPU_BATCH_TOKENS[settings["name"]])
        if content is not None:
            return objective, objective.prepare_stream(content["stream"], content["bos_token_id"])
        return objective, objective.prepare(tokenizer, load_passages(data_file))
    if settings["name"] == "choice":
        objective = ChoiceObjective(source.needs_bos, batch_tokens or CPU_BATCH_TOKENS["choice"])
        return objective, objective.prepare(tokenizer or load_tokenizer(source), choice_items(spec))
    objective = MarginObjective(source.needs_bos, settings["reduce"], batch_tokens or CPU_BATCH_TOKENS["margin"])
    items = sample_items(load_items(data_file), settings["items"], settings["seed"], settings["stratify_by_task"])
    if content is None:
        return objective, objective.prepare(tokenizer, items)
    tokens = content["items"][: len(items)]
    if [item["id"] for item in items] != [entry["id"] for entry in tokens]:
        raise DataError(f"token file {spec['data']['tokens']['file']} holds the ids of other items than "
                        f"the {len(items)} sampled from {data_file.name}")
    return objective, objective.prepare_tokens(items, tokens, content["bos_token_id"])


def choice_items(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a "choice" (downstream task) problem, in the order its rows store them: the
    first `items` of the validation file ranked by the seeded hash of their ids."""
    from problems.calibration_data import shipped_path

    settings = spec["objective"]
    return _sampled_items(shipped_path(spec["data"]["file"]), settings["items"], settings["seed"])


@functools.lru_cache(maxsize=32)
def _sampled_items(data_file: Path, n: int, seed: int) -> list[dict[str, Any]]:
    from problems.calibration_data import load_items, sample_items

    return sample_items(load_items(data_file), n, seed, stratify_by_task=False)


def build_token_file(model: str, objective: str, tokenizer: Any = None) -> dict[str, Any]:
    """The content of the token file of `model`'s default `objective` problem, tokenised now
    (with `tokenizer`, default the model's)."""
    from oracle.model_loading import load_tokenizer
    from oracle.objectives import MarginObjective, PerplexityObjective
    from problems.calibration_data import load_items, load_passages, sample_items, shipped_path
    from problems.model_problems import DATA, DEFAULT_SIZES, MODELS

    source = MODELS[model]
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(source)
    data_file = shipped_path(DATA[objective])
    sizes = DEFAULT_SIZES[objective]
    content: dict[str, Any] = {
        "format": FORMAT,
        "model": model,
        "model_sha256": source.sha256,
        "objective": objective,
        "data": {"file": data_file.name, "sha256": file_digest(str(data_file))},
        "seed": 0,
        "needs_bos": source.needs_bos,
        "bos_token_id": tokenizer.bos_token_id if source.needs_bos else None,
    }
    if objective == "ppl":
        ppl = PerplexityObjective(sizes["windows"], sizes["window_tokens"], 0, source.needs_bos)
        content["stream"] = [int(token) for token in ppl.tokenize(tokenizer, load_passages(data_file))]
    else:
        items = sample_items(load_items(data_file), sizes["items"], 0, stratify_by_task=True)
        tokens = MarginObjective(source.needs_bos).tokenize(tokenizer, items)
        content["stratify_by_task"] = True
        content["items"] = [
            {"id": item["id"],
             "contexts": [[int(t) for t in ids] for ids in entry["contexts"]],
             "continuations": [[int(t) for t in ids] for ids in entry["continuations"]]}
            for item, entry in zip(items, tokens)
        ]
    return content


def token_files(data_dir: str | Path = DATA_DIR, write_missing: bool = False) -> list[dict[str, Any]]:
    """Tokenise the default problems of `TOKEN_MODELS` now and compare with their token files in
    `data_dir`; with `write_missing`, write the files that are missing or were made from another
    model or data file (a file whose ids merely differ is kept: its ids are the ones its
    problem's tables were built on). One record per file: name, problem, tokens (count), status
    ('matches', 'DIFFERS', 'written', 'missing' or 'skipped: <why>'), digest (token digest of the
    default problem from the shipped ids, or None) and libraries (versions tokenising now)."""
    from oracle.errors import ModelUnavailable
    from oracle.model_loading import load_tokenizer
    from problems.model_problems import MODELS, problem_spec

    records = []
    for model in TOKEN_MODELS:
        try:
            tokenizer = load_tokenizer(MODELS[model])
        except ModelUnavailable as error:
            tokenizer, why = None, f"skipped: {error}"
        for objective in TOKEN_FILE_OBJECTIVES:
            path = Path(data_dir) / token_file_name(model, objective)
            record = {"name": path.name, "problem": f"{model}/{objective}", "libraries": tokenizer_libraries(),
                      "digest": None, "tokens": None}
            if tokenizer is None:
                record["status"] = why
                records.append(record)
                continue
            fresh = build_token_file(model, objective, tokenizer)
            shipped = read_token_file(path) if path.is_file() else None
            provenance = {key: value for key, value in fresh.items() if key not in ("stream", "items", "bos_token_id")}
            stale = shipped is None or any(shipped.get(key) != value for key, value in provenance.items())
            if shipped == fresh:
                record["status"] = "matches"
            elif stale and write_missing:
                path.write_bytes(encode_token_file(fresh))
                record["status"] = "written"
                shipped = fresh
            else:
                record["status"] = "missing" if shipped is None else "DIFFERS"
            if shipped is not None:
                record["tokens"] = _count(shipped)
                if Path(data_dir).resolve() == DATA_DIR.resolve():
                    record["digest"] = prepare_calibration(problem_spec(f"{model}/{objective}"))[1].token_digest
            records.append(record)
    return records


def tokenizer_libraries() -> dict[str, str | None]:
    """Installed versions of the libraries that turn text into token ids."""
    versions = {}
    for package in TOKENIZER_LIBRARIES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def refuse_other_tokens(table: Any, digest: str) -> bool:
    """Raise TokenMismatch (one line: both digests, the tokenizer libraries here and the
    table's) when `table` records a token digest other than `digest`. Returns whether the
    table records one at all."""
    stored = _attribute(table, "token_digest")
    if stored is None or stored == digest:
        return stored is not None
    recorded = _attribute(table, "token_libraries") or _attribute(table, "environment") or {}
    raise TokenMismatch(
        f"calibration tokens differ from those table {table.path} was built on: token digest "
        f"{digest[:16]} here, {str(stored)[:16]} in the table (tokenizer libraries here: "
        f"{_versions(tokenizer_libraries())}; the table's: {_versions(recorded)}); its rows cannot be "
        "compared or mixed with evaluations made here: use the versions it was built with, or another table"
    )


# ---------------------------------------------------------------------------------------------


def _load(path: Path) -> tuple[str, dict[str, Any]]:
    """(sha256, content) of a token file, read now (the file is small)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"token file {path} cannot be read: {error.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        content = json.loads(gzip.decompress(data))
    except (OSError, EOFError, ValueError) as error:
        raise DataError(f"token file {path} is not a gzip'd JSON token file ({type(error).__name__})") from None
    if not isinstance(content, dict) or ("stream" not in content and "items" not in content):
        raise DataError(f"token file {path} holds no token ids")
    return digest, content


def _shipped_content(tokens: dict[str, str]) -> dict[str, Any]:
    """The content of the token file a spec names, refused unless its sha256 is the spec's."""
    path = DATA_DIR / Path(tokens["file"]).name
    if not path.is_file():
        raise DataError(f"token file {tokens['file']} is missing from {DATA_DIR}; reinstall depthbench")
    digest, content = _load(path)
    if digest != tokens["sha256"]:
        raise DataError(f"token file {path} has sha256 {digest[:16]}, the problem was built on "
                        f"{tokens['sha256'][:16]}: restore the file the table was made with")
    return content


def _count(content: dict[str, Any]) -> int:
    if "stream" in content:
        return len(content["stream"])
    return sum(len(ids) for item in content["items"] for key in ("contexts", "continuations") for ids in item[key])


def _attribute(table: Any, name: str) -> Any:
    try:
        return table.attribute(name)
    except KeyError:
        return None


def _versions(versions: dict[str, Any]) -> str:
    return ", ".join(f"{package} {versions.get(package) or 'not recorded'}" for package in TOKENIZER_LIBRARIES)
