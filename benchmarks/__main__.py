"""python -m benchmarks COMMAND [args]: one command per module of this package (`COMMAND --help` for its own).

    suite            the training protocol of a benchmark (Any2Point, baselines, ablations, controls, seeds, folds)
    table            a campaign's runs as a table, from their records
    compare          paired comparisons with bootstrap intervals, from run records; --verify, --import-run
    render           regenerate every generated block of README.md, docs/ and the model cards (--check: CI)
    entries          the shipped entries and their accuracy, from their config.json
    speed            tokenizer time, adapted vs bare forward, training step and memory per packaged backbone
    overhead         adapted forward vs the bare frozen backbone on a synthetic ViT
    method-cost      forward ms and training clouds/s of each recipe and ablation
    adapter-use      a trained entry's test accuracy with its adapters switched off
    up-axis          what a z-up upload costs and what predict(up=...) gets back
    busy-cpu         predict() on a machine with one core kept busy, with and without the thread policy
    load-time        cold and warm load + first prediction of the default entries
    app-load         concurrent requests to the app: latency percentiles and errors
    serving-latency  an upload through the served app next to the library doing the same work
    hostile-alloc    the most memory a hostile upload makes the reader allocate
    gpu              the GPU checks (where benchmarks/gpu.py exists)
    low-data         the low-data curve: nearest-class-mean records on the entries' embed(), the plot
"""
import importlib
import importlib.util
import sys

COMMANDS = {"suite": "suite", "table": "results_table", "compare": "compare_runs", "render": "render",
            "entries": "entries_table", "speed": "speed", "overhead": "overhead", "method-cost": "method_cost",
            "adapter-use": "adapter_use", "up-axis": "up_axis", "busy-cpu": "busy_cpu", "load-time": "load_time",
            "app-load": "app_load", "serving-latency": "serving_latency", "hostile-alloc": "hostile_alloc",
            "gpu": "gpu", "low-data": "low_data"}


def available():
    return [c for c, m in COMMANDS.items() if importlib.util.find_spec(f"benchmarks.{m}") is not None]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\navailable here: " + ", ".join(available()))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in available():
        raise SystemExit(f"unknown command {command!r}; one of: {', '.join(available())}")
    module = importlib.import_module(f"benchmarks.{COMMANDS[command]}")
    status = module.main(rest)
    return status if isinstance(status, int) else 0  # a command that returns an exit status has it passed on


if __name__ == "__main__":
    sys.exit(main())
