"""python -m templater.fuzz HARNESS [--runs N]: a fuzzing campaign (see templater.fuzz)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

from templater.fuzz.harnesses import HARNESSES, MARKER, check_folder

# What a harness may leave in its working folder: the input file it wrote.
INPUT_FILES = {"model.npz", "model.onnx", "program.py"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m templater.fuzz", description=__doc__)
    parser.add_argument("harness", choices=sorted(HARNESSES))
    parser.add_argument("--runs", type=int, default=10_000, help="inputs to run [10000]")
    parser.add_argument("--out", help="folder for the corpus and crash files [a new temp folder]")
    parser.add_argument("--timeout", type=int, default=5, help="seconds an input may take [5]")
    parser.add_argument("--rss-mb", type=int, default=2048, help="memory limit in MB [2048]")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed [1]")
    parser.add_argument(
        "--instrument", choices=["all", "templater"], default="all",
        help="coverage of every loaded module (numpy, zipfile, Pillow...) or templater's only "
        "(starts in seconds) [all]",
    )
    args = parser.parse_args(argv)

    harness = HARNESSES[args.harness]
    out = Path(args.out or tempfile.mkdtemp(prefix=f"templater-fuzz-{harness.name}-")).resolve()
    corpus, work = out / "corpus", out / "work"
    corpus.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    seeds = harness.seeds()
    for index, seed in enumerate(seeds):
        (corpus / f"seed-{index}").write_bytes(seed)
    os.chdir(work)  # a file a reader writes by a relative name lands here, and is caught

    def run(data: bytes) -> None:
        with contextlib.suppress(*harness.expected):
            harness.run(data, work)

    for seed in seeds:  # imports (and their warnings) happen here, before warnings are errors
        run(seed)
    import atheris

    if args.instrument == "all":
        atheris.instrument_all()
    else:
        _instrument_templater(atheris)
    warnings.simplefilter("error")  # a warning escaping a reader is a finding too
    count = 0

    def one_input(data: bytes) -> None:
        nonlocal count
        count += 1
        run(data)
        if count % 500 == 0:
            check_folder(work, INPUT_FILES)
            if (work / MARKER).exists():
                raise AssertionError("a reader executed code from its input")

    print(f"templater fuzz {harness.name}: {args.runs} runs, corpus {corpus}", file=sys.stderr)
    atheris.Setup(
        [sys.argv[0], f"-runs={args.runs}", f"-timeout={args.timeout}",
         f"-rss_limit_mb={args.rss_mb}", f"-artifact_prefix={out}/", f"-seed={args.seed}",
         "-print_final_stats=1", str(corpus)],
        one_input,
    )
    atheris.Fuzz()


def _instrument_templater(atheris: object) -> None:
    """Coverage of templater's own functions and methods only."""
    import inspect

    for name, module in list(sys.modules.items()):
        if not name.startswith("templater") or module is None:
            continue
        for value in vars(module).values():
            functions = [value] if inspect.isfunction(value) else []
            if inspect.isclass(value) and value.__module__ == name:
                functions = [f for f in vars(value).values() if inspect.isfunction(f)]
            for function in functions:
                if function.__module__ == name:
                    atheris.instrument_func(function)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
