"""Example: SGD vs random search vs hill climbing at an equal evaluation budget (PNG + table)."""

from __future__ import annotations

import argparse

from templater.compare import compare, table


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=int, default=2000, help="programs evaluated per strategy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="compare_search.png")
    args = parser.parse_args(argv)
    text = table(compare(budget=args.budget, seed=args.seed, output=args.output))
    print(text)
    return text


if __name__ == "__main__":
    main()
