"""Property-based fuzzing of bad input: the command line and the public API driven with random
subsets, k, seeds, budgets, solver configurations, problem names, paths and damaged tables.

Whatever the input: no traceback; bad input is exit code 2 with one line on stderr (`error: …`),
and through the API a DepthbenchError; no table file changes a byte. A command is built from
parts, each drawn valid or broken (at most two broken, none in about a third of the examples),
so valid commands run too. The CLI runs in-process (a real process twice). Examples are
derandomised, so CI sees the same inputs every run; the last test prints how many ran
(`--hypothesis-show-statistics` adds the exit codes per test)."""

import collections
import contextlib
import hashlib
import io
import json
import math
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import problems
import solvers
from bench.cli import main
from oracle.errors import DepthbenchError
from oracle.table import EvaluationTable

SHIPPED_TABLES = sorted((Path(__file__).resolve().parent.parent / "surrogate_tables").glob("*.h5"))
PPL_TABLE = next(path for path in SHIPPED_TABLES if "__ppl__" in path.name)
MODEL_PROBLEMS = ("smollm2-135m/ppl", "smollm2-135m/margin")
CHEAP_SOLVERS = ("random", "greedy", "oneshot", "beam", "exact")
RUN_SOLVERS = ("random", "greedy", "oneshot")
EXAMPLES: collections.Counter = collections.Counter()  # hypothesis examples run, per test


def fuzz(max_examples: int):
    # No explain phase: after a failure it reruns the slowest examples hundreds of times.
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---- verdicts and parts ----------------------------------------------------------------------

# What an argument makes of the whole command: VALID must succeed, BAD must be refused, UNSURE
# (junk that may happen to mean something, a replay that may miss) may do either.
VALID, UNSURE, BAD = "valid", "unsure", "bad"
Args = tuple[list[str], str]  # command-line words and their verdict


def verdict_of(*verdicts: str) -> str:
    return BAD if BAD in verdicts else UNSURE if UNSURE in verdicts else VALID


def arg(verdict: str, *words) -> Args:
    return [str(word) for word in words], verdict


def join(*parts: Args) -> Args:
    return [word for words, _ in parts for word in words], verdict_of(*(verdict for _, verdict in parts))


class Part(NamedTuple):
    """One part of a command or call: a strategy of its valid forms and one of its broken forms."""

    valid: st.SearchStrategy
    broken: st.SearchStrategy


def draw_parts(data, parts: dict[str, Part], min_broken: int = 0) -> tuple[dict[str, Any], set[str]]:
    """A value of every part, each valid except min_broken..2 of them (none in about a third
    of the examples when min_broken is 0), and the names of the broken ones."""
    broken = data.draw(st.sets(st.sampled_from(sorted(parts)), min_size=min_broken, max_size=2), label="broken parts")
    values = {name: data.draw(part.broken if name in broken else part.valid, label=name)
              for name, part in parts.items()}
    return values, broken


def draw_command(data, parts: dict[str, Part], min_broken: int = 0) -> Args:
    return join(*draw_parts(data, parts, min_broken)[0].values())


def optional(part: Part) -> Part:
    return Part(st.one_of(st.just(arg(VALID)), part.valid), part.broken)


# Argument text as a shell can pass it (no NUL byte): digits of other scripts, separators,
# brackets, signs and control characters are the interesting junk.
junk_text = st.one_of(
    st.text(alphabet=st.sampled_from(list("0123456789,; []()-+_.xe٣\t\n\x1e")), max_size=12),
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12),
)
negative = st.integers(-(10**30), -1)
# Values of any JSON type, for configurations, options and arguments of the API.
some_value = st.one_of(st.booleans(), st.integers(-3, 64), negative, st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=6), st.lists(st.integers(-2, 40), max_size=3),
                       st.lists(st.text(max_size=2), max_size=2))
any_value = st.none() | some_value


def integer_option(name: str, low: int, high: int) -> Part:
    """`name=N`: N in low..high, or below low, or not an integer."""
    return Part(
        st.integers(low, high).map(lambda n: arg(VALID, f"{name}={n}")),
        st.one_of(st.integers(-(10**30), low - 1).map(lambda n: arg(BAD, f"{name}={n}")),
                  st.sampled_from(["1.5", "x", "", "1e3", "0x10", "--", "٣", "1_0", " 1"]).map(
                      lambda text: arg(BAD, f"{name}={text}"))),
    )


def format_subset(blocks, style: int) -> str:
    text = [",", " ", ", ", ",  "][style % 4].join(map(str, blocks))
    return f"[{text}]" if style >= 4 else text


def block_lists(n_blocks: int, min_size: int = 0, max_size: int = 6):
    """Distinct blocks of range(n_blocks). Prefixes of permutations: hypothesis's unique lists
    fail internally when they exhaust range(2)."""
    return st.tuples(st.permutations(range(n_blocks)), st.integers(min_size, min(max_size, n_blocks))).map(
        lambda drawn: list(drawn[0][: drawn[1]]))


def subsets(n_blocks: int) -> Part:
    """(text, verdict) of subsets of range(n_blocks): valid ones; duplicated, out-of-range
    (up to huge), negative and junk ones."""
    style = st.integers(0, 7)
    return Part(
        st.tuples(block_lists(n_blocks), style).map(lambda v: (format_subset(v[0], v[1]), VALID)),
        st.one_of(
            st.tuples(block_lists(n_blocks, min_size=1), style).map(
                lambda v: (format_subset(v[0] + v[0][:1], v[1]), BAD)),
            st.tuples(block_lists(n_blocks), st.integers(n_blocks, 10**30) | negative, style).map(
                lambda v: (format_subset(v[0] + [v[1]], v[2]), BAD)),
            junk_text.map(lambda text: (text, UNSURE)),
        ),
    )


def synthetic_names(max_blocks: int = 14) -> Part:
    """Synthetic problem names: valid ones, and bad N, bad seeds, near misses, junk."""
    valid = st.builds(lambda family, n, seed: f"synthetic/{family}-N{n}-seed{seed}",
                      st.sampled_from(["quadratic", "higher-order"]), st.integers(2, max_blocks), st.integers(0, 2**40))
    bad = st.one_of(
        st.builds(lambda n: f"synthetic/quadratic-N{n}-seed0", st.one_of(st.integers(-5, 1), st.integers(257, 10**9))),
        st.builds(lambda seed: f"synthetic/quadratic-N10-seed{seed}", st.sampled_from(["-1", "x", "01", "", "1.5"])),
        st.sampled_from(["synthetic/cubic-N10-seed0", "synthetic/quadratic-N010-seed0", "synthetic/quadratic-N10",
                         "synthetic/", "Synthetic/quadratic-N10-seed0", "synthetic/quadratic-N10-seed0 ",
                         "synthetic/quadratic-n10-seed0", "smollm2-135m/", "smollm2-135m/nll", "gemma3-270m/",
                         "/", ""]),
        junk_text,
    )
    return Part(valid, bad)


def n_blocks_of(name: str) -> int:
    return int(name.split("-N")[1].split("-")[0])


def problem_argument(names, verdict: str = VALID, *extra: str) -> Part:
    """`--problem=NAME` for NAME drawn from `names`, or a broken name."""
    return Part(names.map(lambda name: arg(verdict, f"--problem={name}", *extra)),
                synthetic_names().broken.map(lambda name: arg(BAD, f"--problem={name}", *extra)))


# ---- running the command line ---------------------------------------------------------------


class ModelLoadReached(Exception):
    """Raised instead of loading a model: fuzzing never pays for one."""


def refuse_model_load(*args, **kwargs):
    raise ModelLoadReached


@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.err.strip().splitlines()


def run_cli(argv: list[str]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught:
        # Python's own defaults: what a user of `python -m bench` sees on stderr.
        warnings.simplefilter("default")
        for ignored in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=ignored)
        code = main(argv)
    shown = "".join(f"{warning.category.__name__}: {warning.message}\n" for warning in caught)
    return Outcome(argv, code, out.getvalue(), err.getvalue() + shown)


def assert_refused(outcome: Outcome, after_progress: bool = False) -> None:
    """Exit 2 and one line on stderr, `error: …`; with `after_progress` (the input was found bad
    once work had started, e.g. a replay miss) that line may follow progress lines."""
    lines = outcome.lines()
    assert outcome.code == 2 and lines and lines[-1].startswith("error: "), outcome
    assert len(lines) == 1 or after_progress and not any(line.startswith("error: ") for line in lines[:-1]), outcome


def assert_handled(outcome: Outcome, verdict: str) -> None:
    event(f"{verdict} input, exit {outcome.code}")
    assert "Traceback" not in outcome.err, outcome
    if verdict == BAD:
        assert_refused(outcome)
    elif verdict == VALID:
        assert outcome.code == 0, outcome
    elif outcome.code != 0:
        assert_refused(outcome, after_progress=True)


def digests(paths) -> dict[Path, str]:
    return {Path(path): hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in paths}


def run_guarded(argv: list[str], tables: list[Path]) -> Outcome:
    """Run the CLI; none of `tables` may change."""
    before = digests(tables)
    outcome = run_cli(argv)
    assert digests(tables) == before, outcome
    return outcome


@pytest.fixture(scope="module", autouse=True)
def fuzz_environment(tmp_path_factory):
    """The shipped tables, hashed before and after the module; copies of them in the user table
    directory; a model load replaced by ModelLoadReached."""
    shipped = digests(SHIPPED_TABLES)
    directory = tmp_path_factory.mktemp("tables")
    for path in SHIPPED_TABLES:
        shutil.copy(path, directory / path.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPTHBENCH_TABLES", str(directory))
        patch.setattr("problems.model_oracles.build_live_oracle", refuse_model_load)
        yield directory
    assert digests(SHIPPED_TABLES) == shipped


@pytest.fixture
def table_copies(fuzz_environment) -> list[Path]:
    return sorted(fuzz_environment.glob("*.h5"))


def fresh_directory(tmp_path: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path))


# ---- evaluate and solve ---------------------------------------------------------------------

SYNTHETIC_OPTIONS = Part(st.sampled_from([arg(VALID), arg(VALID, "--json"), arg(VALID, "--oracle=replay")]),
                         st.sampled_from([arg(BAD, "--oracle=junk"), arg(BAD, "--dtype=float16"),
                                          arg(BAD, "--order=predicted"), arg(BAD, "--windows=3")]))
MODEL_OPTIONS = Part(st.sampled_from([arg(VALID), arg(VALID, "--json")]),
                     st.sampled_from([arg(BAD, "--oracle=junk"), arg(BAD, "--dtype=float16"), arg(BAD, "--windows=0"),
                                      arg(BAD, "--items=-2"), arg(BAD, "--study-sizes")]))


def text_option(name: str, part: Part) -> Part:
    """`name=TEXT` for the (text, verdict) pairs of `part`."""
    return Part(*(strategy.map(lambda drawn: arg(drawn[1], f"{name}={drawn[0]}")) for strategy in part))


def subset_arguments(n_blocks: int) -> Part:
    """One to three `--subset`s, valid; or a broken one among up to two more."""
    part = text_option("--subset", subsets(n_blocks))
    return Part(st.lists(part.valid, min_size=1, max_size=3).map(lambda parts: join(*parts)),
                st.tuples(part.broken, st.lists(part.valid | part.broken, max_size=2)).map(lambda v: join(v[0], *v[1])))


DEVICES = Part(st.sampled_from([arg(VALID), arg(VALID, "--device=cpu")]),
               st.sampled_from(["junk", "cuda:x", "", "gpu", "cpu:-1"]).map(
                   lambda device: arg(BAD, f"--device={device}")))


@fuzz(200)
@given(data=st.data())
def test_evaluate_never_tracebacks(data):
    EXAMPLES["evaluate"] += 1
    # A model problem is only replayed, its misses refused: fuzzing never loads a model.
    model = data.draw(st.booleans(), label="model problem")
    if model:
        problem = problem_argument(st.sampled_from(MODEL_PROBLEMS), UNSURE, "--oracle=replay")  # a replay may miss
        n_blocks = 30
    else:
        name = data.draw(synthetic_names().valid, label="synthetic problem")
        problem, n_blocks = problem_argument(st.just(name)), n_blocks_of(name)
    words, verdict = draw_command(data, {
        "problem": problem, "subsets": subset_arguments(n_blocks),
        "batch size": optional(integer_option("--batch-size", 1, 10**9)),
        "options": MODEL_OPTIONS if model else SYNTHETIC_OPTIONS,
    })
    assert_handled(run_cli(["evaluate", *words]), verdict)


def is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def solver_configs(solver: str) -> Part:
    """`--config` JSON: the defaults; the solver's own options with random values, unknown
    options, JSON that is not an object and text that is not JSON."""
    defaults = solvers.get(solver).get_config()
    return Part(
        st.sampled_from(["{}", json.dumps(defaults)]).map(lambda text: arg(VALID, f"--config={text}")),
        st.one_of(
            st.dictionaries(st.sampled_from(sorted(defaults)), st.one_of(any_value, st.integers(10**6, 10**30)),
                            min_size=1, max_size=3).map(lambda c: arg(UNSURE, f"--config={json.dumps(c)}")),
            st.dictionaries(st.text(max_size=8), any_value, min_size=1, max_size=2).map(
                lambda c: arg(UNSURE if set(c) <= set(defaults) else BAD, f"--config={json.dumps(c)}")),
            st.sampled_from(["[]", "1", "null", '"greedy"', "NaN", "[1, 2]", "{bad", ""]).map(
                lambda text: arg(BAD, f"--config={text}")),
            junk_text.map(lambda text: arg(UNSURE if is_json_object(text) else BAD, f"--config={text}")),
        ),
    )


@fuzz(200)
@given(data=st.data())
def test_solve_never_tracebacks(data):
    EXAMPLES["solve"] += 1
    name = data.draw(synthetic_names(max_blocks=12).valid, label="problem")
    n_blocks = n_blocks_of(name)
    solver = data.draw(st.sampled_from(CHEAP_SOLVERS), label="solver")
    words, verdict = draw_command(data, {
        "problem": problem_argument(st.just(name)),
        "solver": Part(st.just(arg(VALID, f"--solver={solver}")),
                       st.one_of(junk_text, st.sampled_from(["", "Greedy", "greedy ", "bo,cbo"])).map(
                           lambda text: arg(UNSURE if text in solvers.names() else BAD, f"--solver={text}"))),
        "config": optional(solver_configs(solver)),
        "k": integer_option("--k", 1, n_blocks - 1),
        "seed": optional(integer_option("--seed", 0, 2**70)),
        "budget": optional(integer_option("--budget", 1, 10**6)),
    })
    # The budget may end before one k-subset is evaluated: refused in one line like the rest.
    assert_handled(run_cli(["solve", *words]), UNSURE if verdict == VALID else verdict)


# ---- run: the grid on synthetic problems ------------------------------------------------------


def run_budgets(names: list[str]) -> Part:
    """`--budget`: N, SOLVER=N, matched and junk. Under N + 1 evaluations (N ≤ 10 blocks) a
    oneshot cell is skipped, and a grid of skipped cells has nothing to report."""
    return Part(
        st.one_of(st.just(arg(VALID)), st.just(arg(VALID, "--budget", "matched")),
                  st.integers(12, 10**6).map(lambda n: arg(VALID, "--budget", n)),
                  st.tuples(st.sampled_from(names), st.integers(12, 500)).map(
                      lambda v: arg(VALID, "--budget", f"{v[0]}={v[1]}")),
                  st.just(arg(VALID if "random" in names else BAD, "--budget", "random=matched"))),
        st.one_of(
            st.integers(1, 11).map(lambda n: arg(UNSURE, "--budget", n)),
            st.integers(-(10**30), 0).map(lambda n: arg(BAD, f"--budget={n}")),
            st.sampled_from(["evopress=5", "bo=matched", "greedy=matched", "=5", "x", "5 6", "random=x", "random==5",
                             "random=-1", "oneshot=0", "matched=5"]).map(
                lambda words: arg(BAD, "--budget", *words.split())),
            junk_text.map(lambda word: arg(UNSURE, f"--budget={word}")),
        ),
    )


@fuzz(30)
@given(data=st.data())
def test_run_never_tracebacks(tmp_path, data):
    EXAMPLES["run"] += 1
    directory = fresh_directory(tmp_path)
    blocker = directory / "file"
    blocker.write_text("not a directory\n")
    name = data.draw(synthetic_names(max_blocks=10).valid, label="problem")
    names = data.draw(st.lists(st.sampled_from(RUN_SOLVERS), min_size=1, max_size=2, unique=True), label="solvers")
    k = integer_option("--k", 1, n_blocks_of(name) - 1)
    words, verdict = draw_command(data, {
        "problem": problem_argument(st.just(name)),
        "solvers": Part(st.just(arg(VALID, f"--solvers={','.join(names)}")),
                        st.sampled_from(["nosuch", ",", "random,,nosuch", " "]).map(
                            lambda text: arg(BAD, f"--solvers={text}"))),
        "k": Part(st.lists(k.valid, min_size=1, max_size=2).map(lambda parts: join(*parts)), k.broken),
        "seeds": optional(integer_option("--seeds", 0, 2**70)),
        "budget": run_budgets(names),
        "out": Part(st.just(arg(VALID, f"--out={directory / 'out'}")),
                    st.sampled_from([arg(BAD, f"--out={blocker}"), arg(BAD, f"--out={blocker / 'below'}")])),
        "oracle": Part(st.sampled_from([arg(VALID), arg(VALID, "--oracle=live")]), st.just(arg(BAD, "--oracle=junk"))),
    }, min_broken=data.draw(st.sampled_from([0, 1, 1, 1]), label="min broken"))  # a valid run costs seconds
    # A budget too short for every cell is found once cells ran: after progress lines.
    assert_handled(run_cli(["run", *words]), verdict)


# ---- damaged copies of the shipped tables -----------------------------------------------------

damage = st.one_of(
    st.floats(0, 1, exclude_max=True).map(lambda at: ("truncate", at)),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=16).map(
        lambda flips: ("flip", flips)),
)


def damaged_copy(data, tmp_path: Path) -> Path:
    """A shipped table copied into a fresh directory, truncated or with bits flipped."""
    source = data.draw(st.sampled_from(SHIPPED_TABLES), label="table")
    kind, where = data.draw(damage, label="damage")
    content = bytearray(source.read_bytes())
    if kind == "truncate":
        content = content[: int(where * len(content))]
    for at, bit in where if kind == "flip" else ():
        content[int(at * len(content))] ^= 1 << bit
    path = fresh_directory(tmp_path) / source.name
    path.write_bytes(content)
    return path


def table_commands(path: Path):
    """Every command that reads a table, on `path`, with a problem of either objective."""
    problem = st.sampled_from(MODEL_PROBLEMS)
    part = subsets(30)
    return st.one_of(
        st.sampled_from([["table", "info", str(path)], ["table", "info", str(path), "--json"],
                         ["table", "verify", str(path), "--rows", "1"]]),
        st.tuples(problem, st.one_of(part.valid, part.broken)).map(
            lambda v: ["evaluate", "--problem", v[0], "--oracle", "replay", "--table", str(path),
                       f"--subset={v[1][0]}"]),
        st.tuples(problem, st.sampled_from(RUN_SOLVERS), st.integers(1, 3), st.integers(1, 40)).map(
            lambda v: ["solve", "--problem", v[0], "--oracle", "replay", "--table", str(path), "--solver", v[1],
                       "--k", str(v[2]), "--budget", str(v[3])]),
    )


def assert_readable_model_table(path: Path) -> None:
    """What `table verify` may load a model for: a table that reads, whose spec is its own."""
    from bench.commands import model_spec_of

    with EvaluationTable.open(path, mode="r") as table:
        model_spec_of(table)


@fuzz(80)
@given(data=st.data())
def test_damaged_tables_are_refused_in_one_line_and_left_as_they_are(tmp_path, table_copies, data):
    EXAMPLES["damaged table"] += 1
    path = damaged_copy(data, tmp_path)
    argv = data.draw(table_commands(path), label="command")
    try:
        outcome = run_guarded(argv, [path, *table_copies])
    except ModelLoadReached:
        event("table verify loads the model")
        assert argv[:2] == ["table", "verify"]
        assert_readable_model_table(path)
        return
    assert_handled(outcome, UNSURE)  # a flipped bit may fall where nothing reads it


@fuzz(80)
@given(data=st.data())
def test_opening_a_damaged_table_raises_only_table_errors(tmp_path, data):
    EXAMPLES["damaged table API"] += 1
    path = damaged_copy(data, tmp_path)
    before = digests([path])
    subset = data.draw(st.lists(st.integers(-1, 31), max_size=4) | any_value, label="subset")
    try:
        with EvaluationTable.open(path, mode=data.draw(st.sampled_from("ra"), label="mode")) as table:
            table.info()
            table.to_arrays()
            table.lookup(subset)
    except DepthbenchError as error:
        event(type(error).__name__)
    assert digests([path]) == before


# ---- paths that are not what they should be --------------------------------------------------

PATH_KINDS = ("missing", "directory", "text file", "empty file", "binary file", "below a file", "foreign table")


def make_path(directory: Path, kind: str) -> Path:
    path = directory / "thing"
    if kind == "directory":
        path.mkdir()
    elif kind == "text file":
        path.write_text("3,7\nnot an hdf5 file\n")
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "binary file":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "below a file":
        path.write_text("x")
        path = path / "below"
    elif kind == "foreign table":
        path = directory / PPL_TABLE.name
        shutil.copy(PPL_TABLE, path)
    return path


def path_commands(path: Path, kind: str) -> list[Args]:
    """The commands that take a path, with their verdict given what is at `path`; the foreign
    table is the ppl problem's, given to the margin problem (and verified: a model load)."""
    a_table = kind == "foreign table"
    commands = [arg(VALID if a_table else BAD, "table", "verify", path),
                arg(BAD, "evaluate", "--problem", "smollm2-135m/margin", "--oracle", "replay", "--table", path,
                    "--subset", "1"),
                arg(UNSURE if kind in ("text file", "binary file") else BAD,
                    "evaluate", "--problem", "synthetic/quadratic-N10-seed0", "--subsets-file", path),
                arg(BAD, "report", path), arg(BAD, "leaderboard", path)]
    if not a_table:  # on a real table: slow (info) or a datasheet written next to it
        commands += [arg(BAD, "table", "info", path), arg(BAD, "table", "datasheet", "--dir", path)]
    return commands


@fuzz(80)
@given(data=st.data())
def test_bad_paths_are_refused_in_one_line(tmp_path, table_copies, data):
    EXAMPLES["paths"] += 1
    kind = data.draw(st.sampled_from(PATH_KINDS), label="kind")
    path = make_path(fresh_directory(tmp_path), kind)
    words, verdict = data.draw(st.sampled_from(path_commands(path, kind)), label="command")
    if words[:2] == ["table", "verify"]:
        words, verdict = join((words, verdict), draw_command(data, {
            "rows": optional(integer_option("--rows", 1, 10**30)), "seed": optional(integer_option("--seed", 0, 2**70)),
            "device": DEVICES}))
    try:
        outcome = run_guarded(words, [path, *table_copies] if path.is_file() else table_copies)
    except ModelLoadReached:
        assert words[:2] == ["table", "verify"] and verdict == VALID
        return
    assert_handled(outcome, verdict)


@fuzz(40)
@given(data=st.data())
def test_perf_refuses_bad_input_before_loading_a_model(data):
    EXAMPLES["perf"] += 1
    words, verdict = draw_command(data, {
        "problem": problem_argument(st.sampled_from(MODEL_PROBLEMS)),
        "base": text_option("--base", subsets(30)), "device": DEVICES,
    }, min_broken=1)
    try:
        outcome = run_cli(["perf", *words])
    except ModelLoadReached:
        assert verdict != BAD  # junk that happens to be a valid base
        return
    assert_handled(outcome, verdict)


# ---- the public API --------------------------------------------------------------------------

PROBLEM_OPTIONS = ("oracle", "on_miss", "device", "dtype", "study_sizes", "windows", "window_tokens", "items",
                   "margin_reduce", "bos", "cost_s")
MODEL_CONFIGS = (None, "{bad", "{}", "[]", '{"num_hidden_layers": "x"}', '{"num_hidden_layers": -1}',
                 '{"text_config": 3}')


def model_directory(directory: Path, config: str | None) -> str:
    """A local model directory with a weight file and `config` as config.json (none if None)."""
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"")
    if config is not None:
        (directory / "config.json").write_text(config)
    return str(directory)


def problem_parts(directory: Path, table_copies: list[Path]) -> dict[str, Part]:
    """problems.get(name, **options) and a subset for the problem's evaluate. Model problems are
    only replayed (never a live model); a `table` is a path: another type is a known fault of
    problems.model_oracles (see the report)."""
    tables = [str(directory / "missing.h5"), str(directory), str(table_copies[0]), table_copies[-1]]
    models = st.sampled_from(MODEL_CONFIGS).map(lambda config: model_directory(directory / "model", config))
    return {
        "name": Part(synthetic_names().valid, synthetic_names().broken | st.just("gemma3-270m/margin")),
        "options": Part(st.sampled_from([{}, {"oracle": "replay"}, {"cost_s": 0.0},
                                         {"device": "cpu", "on_miss": "strict"}]),
                        st.dictionaries(st.sampled_from(PROBLEM_OPTIONS) | st.text(max_size=6), any_value, min_size=1,
                                        max_size=3)),
        "table": Part(st.just({}), st.sampled_from(tables).map(lambda table: {"table": table})),
        "model": Part(st.just({}), models.map(lambda model: {"model": model})),
        "subset": Part(block_lists(2), st.lists(st.integers(-2, 300) | any_value, max_size=4) | any_value),
    }


@fuzz(200)
@given(data=st.data())
def test_problems_raise_only_depthbench_errors(tmp_path, table_copies, data):
    EXAMPLES["problems API"] += 1
    model = data.draw(st.sampled_from(MODEL_PROBLEMS) | st.none(), label="model problem")
    parts, broken = draw_parts(data, problem_parts(fresh_directory(tmp_path), table_copies))
    name = model or parts["name"]
    replay = {} if name.startswith("synthetic/") else {"oracle": "replay"}  # never a live model
    options = {**parts["options"], **parts["table"], **parts["model"], **replay}
    before = digests(table_copies)
    try:
        with problems.get(name, **options) as problem:
            problem.evaluate([parts["subset"]])
    except DepthbenchError as error:
        event(type(error).__name__)
        assert broken or model, error  # a replay may miss
    else:
        event("evaluated")
    assert digests(table_copies) == before


def solver_parts(name: str) -> dict[str, Part]:
    """solvers.get(name, **config) and solve(problem N=8, k, budget, seed, prior)."""
    defaults = solvers.get(name).get_config()
    return {
        "name": Part(st.just(name), st.text(max_size=8).filter(lambda text: text not in solvers.names())),
        "config": Part(st.sets(st.sampled_from(sorted(defaults))).map(
                           lambda keys: {key: defaults[key] for key in keys}),
                       st.dictionaries(st.sampled_from(sorted(defaults)) | st.text(max_size=6), any_value, min_size=1,
                                       max_size=3)),
        "k": Part(st.integers(1, 7), st.integers(-(10**20), 0) | st.integers(8, 10**20) | any_value),
        "budget": Part(st.none() | st.integers(30, 60), st.integers(-(10**20), 0) | some_value),
        "seed": Part(st.integers(0, 2**70), negative | any_value),
        "prior": Part(st.none() | st.lists(st.floats(-5, 5), min_size=8, max_size=8),
                      st.lists(st.floats(allow_nan=True), max_size=9) | some_value),
    }


@fuzz(200)
@given(data=st.data())
def test_solvers_raise_only_depthbench_errors(data):
    EXAMPLES["solvers API"] += 1
    parts, broken = draw_parts(data, solver_parts(data.draw(st.sampled_from(solvers.names()), label="solver")))
    try:
        solver = solvers.get(parts["name"], **parts["config"])
        if parts["name"] in ("bo", "cbo"):
            return  # their configuration is what is fuzzed here: one search costs seconds (see their tests)
        result = solver.solve(problems.get("synthetic/quadratic-N8-seed0"), parts["k"], budget=parts["budget"],
                              seed=parts["seed"], prior=parts["prior"])
    except DepthbenchError as error:
        event(type(error).__name__)
        assert broken, error
        return
    event("solved")
    assert len(result.subset) == parts["k"] and result.n_evaluations <= (parts["budget"] or math.inf)


# ---- real processes ---------------------------------------------------------------------------


def run_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True)


def test_a_real_process_refuses_a_negative_seed_before_running_anything(tmp_path):
    result = run_process("run", "--problem", "synthetic/quadratic-N8-seed0", "--k", "2", "--solvers", "random",
                         "--seeds", "-1", "--out", str(tmp_path / "out"))
    assert (result.returncode, result.stderr) == (2, "error: seed must be a non-negative integer, got -1\n")
    assert not (tmp_path / "out").exists()


def test_a_real_process_refuses_a_truncated_table_in_one_line(tmp_path):
    path = tmp_path / PPL_TABLE.name
    path.write_bytes(PPL_TABLE.read_bytes()[:4096])
    result = run_process("table", "info", str(path))
    assert (result.returncode, result.stderr) == (2, f"error: {path} is not a depthbench table (not an HDF5 file)\n")


def test_report_the_number_of_examples_run(capsys):
    """Runs last: says how many hypothesis examples each test of the module ran."""
    with capsys.disabled():
        counts = ", ".join(f"{name} {count}" for name, count in sorted(EXAMPLES.items()))
        print(f"\ntest_fuzz: {sum(EXAMPLES.values())} hypothesis examples ({counts})")
    assert all(count > 0 for count in EXAMPLES.values())
