"""Write a results directory's offline.json from offline_heads.sh's output lines.

offline_heads.sh prints one line per head and held-out set: `NAME SET POS1 POS2 POS3` (acceptance %). A results
script tees those lines to a file and turns them into `{"note": ..., "heads": {NAME: {SET: [p1, p2, p3]}}}`;
heads measured in an earlier experiment are taken from its offline.json instead of being measured again.

usage: offline_json.py LINES OUT --note TEXT [--take FILE:HEAD[=NAME]]... [--drop-set SET]...
"""
import argparse
import json

from training.files import atomic_write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lines", help="offline_heads.sh output: NAME SET POS1 POS2 POS3 per line")
    parser.add_argument("out", help="offline.json to write")
    parser.add_argument("--note", required=True, help="what the heads and sets are")
    parser.add_argument("--take", action="append", default=[], metavar="FILE:HEAD[=NAME]",
                        help="a head from an earlier offline.json (first in the output, in the order given)")
    parser.add_argument("--drop-set", action="append", default=[], metavar="SET",
                        help="a set left out of the taken heads (e.g. one measured on training conversations)")
    args = parser.parse_args(argv)
    heads = {}
    for spec in args.take:
        path, _, head = spec.rpartition(":")
        head, _, name = head.partition("=")
        if not path:
            parser.error(f"--take {spec}: expected FILE:HEAD[=NAME]")
        try:
            taken = json.load(open(path, encoding="utf-8"))["heads"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            parser.error(f"--take {spec}: {path} is not a readable offline.json with a 'heads' object ({e!r})")
        if head not in taken:
            parser.error(f"--take {spec}: no head {head!r} in {path} (has {sorted(taken)})")
        heads[name or head] = {s: v for s, v in taken[head].items() if s not in args.drop_set}
    for n, line in enumerate(open(args.lines, encoding="utf-8"), 1):
        fields = line.split()
        try:
            name, s, *pos = fields
            pos = [float(p) for p in pos]
            if len(pos) != 3:
                raise ValueError
        except ValueError:
            parser.error(f"{args.lines}:{n}: expected 'NAME SET POS1 POS2 POS3', got {line.strip()!r}")
        heads.setdefault(name, {})[s] = pos
    atomic_write(args.out, json.dumps({"note": args.note, "heads": heads}, indent=1))


if __name__ == "__main__":
    main()
