"""Calibration and evaluation data for the objectives: text passages (`ppl`) and
multiple-choice items (`margin`, zero-shot evaluation).

A source is a file shipped under `problems/data/` (by name, with or without `.jsonl.gz`), a
local JSON-lines file, or any `datasets` hub name. Everything goes through
`datasets.load_dataset`, and every row is checked once here, so the objectives can trust what
they get. Sampling ranks items on a seeded SHA-256 of their ids: the same seed gives the same
items on every machine and library version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oracle.errors import DataError

DATA_DIR = Path(__file__).resolve().parent / "data"
SUFFIX = ".jsonl.gz"


def shipped_path(name: str) -> Path:
    """Path of a file shipped under problems/data/, e.g. `margin-cs8-train` (suffix optional)."""
    file_name = name if name.endswith(SUFFIX) else name + SUFFIX
    path = DATA_DIR / file_name
    if Path(file_name).name != file_name or not path.is_file():
        raise DataError(f"no shipped data file {name!r}; available: {_shipped_names()}")
    return path


def load_passages(name_or_path: str | Path, split: str = "train") -> list[str]:
    """Texts for perplexity, in file order. A row needs a non-empty string `text`; when it also
    has a `title`, the title is returned as the text's first line ("title\\ntext"), as a
    Wikipedia article starts with its title."""
    rows, source = _load_rows(name_or_path, split)
    texts = []
    for number, row in enumerate(rows, 1):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{source}: row {number}: missing or empty 'text'")
        title = row.get("title")
        if title is not None and not isinstance(title, str):
            raise DataError(f"{source}: row {number}: 'title' is {type(title).__name__}, "
                            "not a string")
        texts.append(f"{title}\n{text}" if title else text)
    if not texts:
        raise DataError(f"{source}: no passages")
    return texts


def load_items(name_or_path: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Multiple-choice items, in file order: {"task": str, "id": str, "gold": int,
    "choices": [{"context": str, "continuation": str}, ...]} with at least two choices, a
    non-empty continuation for each and 0 <= gold < len(choices). Ids are unique."""
    rows, source = _load_rows(name_or_path, split)
    items = []
    seen: set[str] = set()
    for number, row in enumerate(rows, 1):
        item = _checked_item(row, f"{source}: row {number}")
        if item["id"] in seen:
            raise DataError(f"{source}: row {number}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        items.append(item)
    if not items:
        raise DataError(f"{source}: no items")
    return items


def sample_items(items: Sequence[dict[str, Any]], n: int, seed: int,
                 stratify_by_task: bool = True) -> list[dict[str, Any]]:
    """n items chosen by seed alone.

    Items are ranked by SHA-256 of `<seed>:<id>`. With `stratify_by_task`, items are dealt
    round-robin over the tasks in sorted order, each task giving its next-ranked item, so every
    task gets n // tasks or one more (a task that runs out drops out of the round). Without it,
    the n lowest-ranked items. The result is in the order drawn."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataError(f"sample size must be a non-negative integer, got {n!r}")
    if n > len(items):
        raise DataError(f"cannot sample {n} items from a pool of {len(items)}")
    ranked = sorted(range(len(items)), key=lambda i: (_rank(seed, items[i]["id"]), i))
    if not stratify_by_task:
        return [items[i] for i in ranked[:n]]
    queues: dict[str, list[int]] = {}
    for i in ranked:
        queues.setdefault(items[i]["task"], []).append(i)
    order = [queues[task] for task in sorted(queues)]
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < n:
        for queue in order:
            if depth < len(queue) and len(chosen) < n:
                chosen.append(items[queue[depth]])
        depth += 1
    return chosen


# ---------------------------------------------------------------------------------------------


def _shipped_names() -> str:
    return ", ".join(sorted(p.name[: -len(SUFFIX)] for p in DATA_DIR.glob("*" + SUFFIX)))


def _rank(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def _resolve(name_or_path: str | Path) -> tuple[str, bool]:
    """(what to give load_dataset, whether it is a local JSON-lines file)."""
    if isinstance(name_or_path, Path):
        return str(name_or_path), True
    if Path(name_or_path).is_file():
        return name_or_path, True
    candidate = name_or_path if name_or_path.endswith(SUFFIX) else name_or_path + SUFFIX
    if "/" not in name_or_path and (DATA_DIR / candidate).is_file():
        return str(DATA_DIR / candidate), True
    if name_or_path.endswith((".json", ".jsonl", ".gz")) or name_or_path.startswith((".", "/")):
        raise DataError(f"data file {name_or_path} does not exist")
    return name_or_path, False


def _load_rows(name_or_path: str | Path, split: str) -> tuple[list[dict[str, Any]], str]:
    """All rows of a source as plain dicts, and the source's name for messages."""
    source, local = _resolve(name_or_path)
    if local and not Path(source).is_file():
        raise DataError(f"data file {source} does not exist")
    try:
        import datasets
    except ImportError as exc:
        raise DataError("reading data needs the `datasets` package: pip install datasets") \
            from exc
    try:
        if local:
            dataset = datasets.load_dataset("json", data_files=source, split="train")
        else:
            dataset = datasets.load_dataset(source, split=split)
        rows = dataset.to_list()
    except Exception as exc:  # any failure to read becomes one line naming the source
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        hint = "" if local else f" (not a local file nor one of the shipped: {_shipped_names()})"
        raise DataError(f"{source}: cannot be read as a dataset ({type(exc).__name__}: "
                        f"{reason}){hint}") from exc
    return rows, source


def _checked_item(row: dict[str, Any], where: str) -> dict[str, Any]:
    for field, kind in (("task", str), ("id", str), ("gold", int), ("choices", list)):
        value = row.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(f"{where}: field {field!r} is {value!r:.60}, expected "
                            f"{kind.__name__}")
    choices = row["choices"]
    if len(choices) < 2:
        raise DataError(f"{where}: {len(choices)} choice(s), need at least 2")
    clean = []
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise DataError(f"{where}: choice {index} is not an object")
        context, continuation = choice.get("context"), choice.get("continuation")
        if not isinstance(context, str) or not isinstance(continuation, str) \
                or not continuation.strip():
            raise DataError(f"{where}: choice {index} needs a string 'context' and a "
                            "non-empty 'continuation'")
        clean.append({"context": context, "continuation": continuation})
    if not 0 <= row["gold"] < len(clean):
        raise DataError(f"{where}: gold {row['gold']} out of range for {len(clean)} choices")
    return {"task": row["task"], "id": row["id"], "gold": row["gold"], "choices": clean}
