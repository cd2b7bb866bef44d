"""`python -m zoo list [--modality M]` and `python -m zoo info NAME`."""
import argparse
import json
import sys

from zoo.registry import entry_labels, get_entry, list_models, status


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m zoo", description="List and inspect Any2Point zoo entries.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="every entry, whether it is available here, and why not")
    ls.add_argument("--modality", choices=["vision", "language", "audio"])
    ls.add_argument("--json", action="store_true")
    info = sub.add_parser("info", help="one entry in full")
    info.add_argument("name")
    a = p.parse_args(argv)
    if a.cmd == "list":
        rows = list_models(a.modality)
        if a.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'name':42} {'modality':9} {'state':11} backbone / reason")
        for r in rows:
            state = ("trained" if r["trained"] else "untrained") if r["available"] else "unavailable"
            mark = "*" if r["default"] else " "
            print(f"{r['name']:41}{mark} {r['modality']:9} {state:11} {r['backbone']}")
            if not r["available"] or not r["trained"]:
                print(f"{'':64}{r['reason']}")
        print("\n* default for its modality")
        return 0
    try:
        e = get_entry(a.name)
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    available, trained, reason = status(e)
    out = dict(vars(e), model=e.model.to_dict(), labels=list(entry_labels(e)), available=available, trained=trained,
               reason=reason)
    from zoo.registry import _local_artifact
    folder = _local_artifact(e)
    if folder:
        out["artifact_config"] = json.loads((folder / "config.json").read_text())
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
