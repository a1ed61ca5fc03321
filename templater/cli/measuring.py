"""The bench command."""

from __future__ import annotations

import click

from templater.cli.group import main


# -- bench -----------------------------------------------------------------------------------------
@main.command("bench")
@click.option("--quick", is_flag=True, help="Fewer repeats and smaller batches (a fast run).")
@click.option(
    "--arch", "archs", multiple=True, help="A network to measure (repeatable) [four sizes]."
)
@click.option(
    "--layout", type=click.Choice(["auto", "unrolled", "table"]), default="auto",
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-scan", is_flag=True, help="Skip the astronaut scan.")
@click.option("--no-onnx", is_flag=True, help="Skip the onnxruntime baselines.")
@click.option("--sweep", is_flag=True, help="Also compile 1k to 1M parameter networks (slow).")
@click.option(
    "--dtype", "dtypes", multiple=True, type=click.Choice(["float64", "float32"]),
    help="Program float type(s) to measure, each beside the same baselines (repeatable) [float64].",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write results here.")
@click.option("--conv", is_flag=True,
              help="Convolutional programs instead: MTCNN's nets and detector against onnxruntime.")
def bench_command(
    quick: bool, archs: tuple[str, ...], layout: str, seed: int, no_scan: bool, no_onnx: bool,
    sweep: bool, dtypes: tuple[str, ...], json_path: str | None, conv: bool,
) -> None:
    """Measure compile cost, call rates and scan speed against numpy, numba and onnxruntime."""
    from templater import bench
    from templater.fileio import check_output, write_atomic

    check_output(json_path, [], (".json",))
    if conv:
        from templater.bench.conv import run_conv, table

        results = run_conv(3 if quick else 7, progress=lambda text: click.echo(text, err=True))
        click.echo(table(results))
        if json_path:
            write_atomic(json_path, results.to_json() + "\n")
            click.echo(f"wrote {json_path}", err=True)
        return
    config = bench.BenchConfig(
        archs=archs or bench.ARCHS, quick=quick, layout=layout, seed=seed, scan=not no_scan,
        onnx=not no_onnx, sweep=sweep, dtypes=dtypes or ("float64",),
    )
    results = bench.run(config, progress=lambda text: click.echo(text, err=True))
    click.echo(bench.table(results))
    click.echo("\nThe speed targets in this run:\n")
    click.echo(bench.criteria(results))
    if json_path:
        write_atomic(json_path, results.to_json() + "\n")
        click.echo(f"wrote {json_path}", err=True)
