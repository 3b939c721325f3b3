"""`python -m bench`: the command line. Bad input → one line on stderr and exit 2; an internal
failure → traceback and exit 1."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from oracle.errors import BadInput
from oracle.integers import integer


class ArgumentError(BadInput):
    """A command line that argparse cannot read."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ArgumentError(f"{self.prog}: {message}")

    def _get_values(self, action, arg_strings):
        # argparse drops the value of `--option=--` and stores [] unconverted, whatever the type.
        if action.option_strings and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected a value, not '--'")
        return super()._get_values(action, arg_strings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by `run`
        if not hasattr(args, "handler"):
            parser.print_help()
            return 2
        return args.handler(args) or 0
    except BadInput as error:
        # One line, whatever the message carries (echoed input, a library's multi-line detail).
        print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(parser_class=OneLineParser)

    evaluate = commands.add_parser("evaluate", help="evaluate L(S) of subsets on a problem")
    add_problem_arguments(evaluate)
    evaluate.add_argument("--subset", action="append", default=[], metavar="I,J,…",
                          help="blocks to remove, e.g. 3,7,12 (repeatable; '' is the empty subset)")
    evaluate.add_argument("--subsets-file", type=Path, help="file with one subset per line")
    evaluate.add_argument("--all-of-size", type=integer, nargs="+", metavar="K",
                          help="every subset of each size K (e.g. 0 1 2 for L(∅), all singles and all pairs)")
    evaluate.add_argument("--batch-size", type=integer, default=None,
                          help="evaluate and store the subsets in batches of this many, with progress (resumable; default 100)")
    evaluate.add_argument("--order", choices=("given", "predicted"), default="given",
                          help="predicted: lowest L(S) predicted by the surrogate of the problem's table first, so a "
                               "build stopped early has the likeliest best subsets (default: as given)")
    evaluate.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    evaluate.set_defaults(handler=lambda a: _commands().evaluate(a))

    solve = commands.add_parser("solve", help="run one solver on a problem for one k")
    add_problem_arguments(solve)
    solve.add_argument("--solver", required=True, help="registry name, e.g. greedy (see `list`)")
    solve.add_argument("--k", type=integer, required=True, help="number of blocks to remove")
    solve.add_argument("--budget", type=integer, help="maximum unique evaluations")
    solve.add_argument("--seed", type=integer, default=0)
    solve.add_argument("--config", default="{}", help="solver configuration as JSON, e.g. '{\"width\": 3}'")
    solve.add_argument("--json", action="store_true")
    solve.set_defaults(handler=lambda a: _commands().solve(a))

    run = commands.add_parser("run", help="run the grid problems × k × solvers × seeds (resumable)")
    run.add_argument("--problem", nargs="+",
                     help="default: smollm2-135m/ppl, margin and kl at k = 4 6 8 and gemma3-270m/ppl and margin at "
                          "k = 2 (what the shipped tables answer in full); with --model, its ppl and margin")
    run.add_argument("--k", nargs="+", type=integer, help="blocks to remove (default 4 6 8; the default grid: per problem)")
    run.add_argument("--solvers", default="panel",
                     help="panel (default: every solver but exact, which would enumerate every k-subset, and "
                          "ng-DiscreteOnePlusOne), all (the panel and exact), "
                          "or names, e.g. greedy,random,exact")
    run.add_argument("--seeds", nargs="+", type=integer, default=[0, 1, 2], help="default 0 1 2")
    run.add_argument("--oracle", choices=("live", "replay"), default="replay")
    run.add_argument("--on-miss", choices=("strict", "live", "surrogate"), default="surrogate",
                     help="a subset the table lacks: surrogate (default; answered by the table's surrogate, "
                          "marked ~), strict (that cell fails, the others run), live (evaluated on the model)")
    add_model_arguments(run)
    run.add_argument("--budget", nargs="+", metavar="N|SOLVER=N",
                     help="maximum unique evaluations of every cell (N) or of one solver's cells (e.g. bo=50); "
                          "default: none, except random=100 evopress=100; 'matched' gives random and evopress "
                          "the mean the other solvers used")
    run.add_argument("--out", type=Path, default=Path("results/default"), help="default results/default")
    run.add_argument("--jobs", type=integer,
                     help="problems run at once, each in its own process (default: replay, one per CPU up to "
                          "the number of problems; live, 1)")
    run.set_defaults(handler=lambda a: _commands().run(a))

    report = commands.add_parser("report", help="rebuild the HTML report and Markdown summary of a `run` directory")
    report.add_argument("out", type=Path)
    report.set_defaults(handler=lambda a: _commands().report(a))

    downstream = commands.add_parser(
        "downstream", help="evaluate the pruned models of `run` directories on the zero-shot tasks and held-out "
                           "text (per item, stored in tables, resumable)")
    downstream.add_argument("out", type=Path, nargs="*", default=[Path("results/default")],
                            help="run directories whose answers to evaluate (default results/default)")
    downstream.add_argument("--problem", nargs="+", help="only the answers to these problems (default: all of a "
                                                         "model's problems in the runs)")
    downstream.add_argument("--sets", nargs="+",
                            help="evaluation sets (default: the six tasks and both held-out texts)")
    downstream.add_argument("--singles", action="store_true",
                            help="also every single-block removal (the per-block relevance of the report)")
    downstream.add_argument("--items", type=integer, help="items per task (default 100; --study-sizes: all)")
    downstream.add_argument("--study-sizes", action="store_true")
    downstream.add_argument("--model", help="the weights of a `run --model` run (local directory or hub id): "
                                            "evaluate that run's answers")
    downstream.add_argument("--device", default="cpu")
    downstream.add_argument("--dtype")
    downstream.add_argument("--batch-tokens", type=integer)
    downstream.set_defaults(handler=lambda a: _commands().downstream(a))

    board = commands.add_parser("leaderboard", help="leaderboard of one or more `run` output directories")
    board.add_argument("out", type=Path, nargs="+")
    board.set_defaults(handler=lambda a: _commands().leaderboard(a))

    table = commands.add_parser("table", help="inspect, verify or merge tables").add_subparsers(
        parser_class=OneLineParser)
    info = table.add_parser("info", help="fingerprint, spec, rows, coverage, environment")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=lambda a: _commands().table_info(a))
    verify = table.add_parser("verify", help="re-evaluate a random sample of rows live")
    verify.add_argument("path", type=Path)
    verify.add_argument("--rows", type=integer, default=10, help="rows to re-evaluate (default 10)")
    verify.add_argument("--seed", type=integer, default=0)
    verify.add_argument("--device", default="cpu")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=lambda a: _commands().table_verify(a))

    merge = table.add_parser("merge", help="add to a table the rows and attributes of tables of the same problem "
                                           "built elsewhere (parallel builds, other machines)")
    merge.add_argument("target", type=Path)
    merge.add_argument("sources", type=Path, nargs="+")
    merge.set_defaults(handler=lambda a: _commands().table_merge(a))

    rekey = table.add_parser("rekey", help="copy a table built before its problem's token ids were shipped to the "
                                           "name its problem has now (checked: the same ids)")
    rekey.add_argument("paths", type=Path, nargs="+")
    rekey.set_defaults(handler=lambda a: _commands().table_rekey(a))

    datasheet = table.add_parser("datasheet", help="write the datasheet (README.md) of a directory of tables")
    datasheet.add_argument("--dir", type=Path, help="default: the shipped tables (surrogate_tables/)")
    datasheet.set_defaults(handler=lambda a: _commands().table_datasheet(a))

    data = commands.add_parser("data", help="the shipped calibration and evaluation data").add_subparsers(
        parser_class=OneLineParser)
    data.add_parser("check", help="rebuild the data files from their packages and compare").set_defaults(
        handler=lambda a: _commands().data_check(a))
    data.add_parser("rebuild", help="rebuild the shipped data files and SOURCES.md").set_defaults(
        handler=lambda a: _commands().data_rebuild(a))

    listing = commands.add_parser("list", help="list problems and solvers")
    listing.set_defaults(handler=lambda a: _commands().list_problems(a))

    perf = commands.add_parser("perf", help="oracle benchmarks: prefix reuse, FLOP/s, table lookups")
    perf.add_argument("--problem", default="smollm2-135m/ppl")
    perf.add_argument("--base", default="5,20", help="fixed subset the greedy step extends (default 5,20)")
    perf.add_argument("--shape", help="random weights of a named architecture instead of the problem's model "
                                      "(llama3-8b, qwen3-8b, smollm2-135m): the cost without the weights")
    perf.add_argument("--step-subsets", type=integer,
                      help="measure that many evenly spaced subsets of the greedy step (default: all)")
    perf.add_argument("--ray-workers", type=integer, nargs="+", metavar="N",
                      help="instead: throughput of the Ray executor with N workers each, against the in-process "
                           "oracle, and its overhead per request (with --address: on that cluster)")
    add_model_arguments(perf)
    perf.add_argument("--solvers", action="store_true",
                      help="instead: solver optimality gaps and overhead on synthetic problems (no model)")
    perf.set_defaults(handler=lambda a: _commands().perf(a))
    return parser


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problem", required=True, help="problem name, e.g. smollm2-135m/ppl")
    parser.add_argument("--oracle", choices=("live", "replay"), default="live")
    parser.add_argument("--on-miss", choices=("strict", "live", "surrogate"), default="strict")
    parser.add_argument("--table", type=Path, help="table file (default: the problem's table)")
    add_model_arguments(parser)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """What model problems are built from and where they run (ignored by synthetic problems
    where it means nothing, refused where it changes what they compute)."""
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, …")
    parser.add_argument("--dtype", help="float32 (default), bfloat16 or float16 (GPU only)")
    parser.add_argument("--study-sizes", action="store_true",
                        help="the reference study's sizes: 64×2048 tokens (ppl), 128 items (margin)")
    parser.add_argument("--windows", type=integer, help="ppl: number of calibration windows")
    parser.add_argument("--window-tokens", type=integer, help="ppl: tokens per window")
    parser.add_argument("--items", type=integer, help="margin: number of multiple-choice items")
    parser.add_argument("--margin-reduce", choices=("mean", "pudding_sum"),
                        help="margin: mean over wrong options (default) or PuDDing's sum")
    parser.add_argument("--model", help="any Hugging Face causal LM (local directory or hub id) instead of "
                                        "the problem's model")
    parser.add_argument("--bos", action=argparse.BooleanOptionalAction, default=None,
                        help="start every window and prompt with BOS (default: the model's setting)")
    parser.add_argument("--batch-tokens", type=integer,
                        help="tokens per forward (default: 2048 ppl / 512 margin on a CPU, from free memory on "
                             "a GPU); changes speed and memory, not the loss")
    parser.add_argument("--executor", choices=("local", "ray"),
                        help="where live evaluations run: in this process (local, default) or on Ray model replicas")
    parser.add_argument("--workers", type=integer, help="ray: model replicas, one GPU each on cuda (default 1)")
    parser.add_argument("--address", help="ray: the cluster to join (default: a local Ray)")


def _commands():
    # Imported on use so that `--help` and argument errors cost nothing.
    from bench import commands

    return commands
