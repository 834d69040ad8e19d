"""python -m bench <scenario> [--json FILE] [--duration S] [--smoke] [--sizes N,...] [--log-dir DIR]

Scenarios: join, audio-room, fanout, relay, fanout-joins, relay-nodes, all; and soak [--minutes M] (not in
all). Runs inside the private network namespace of scripts/netns-run (re-executing itself there when root
and not inside yet): the SDKs and the light peers gather ICE candidates on 10.213.0.1; everything else stays
on 127.0.0.1 (relay-nodes: on the cluster's private bridge).
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import janus
from bench import result as results
from bench.relay_nodes import run_relay_nodes
from bench.result import ScenarioError
from bench.scenarios import SCENARIOS, Options
from bench.soak import run_soak

REPO = Path(__file__).resolve().parent.parent
ORDER = ("join", "audio-room", "fanout", "relay", "fanout-joins", "relay-nodes")
JANUS_SCENARIOS = ("audio-room", "fanout", "all")


def _install_janus() -> None:
    """Installs the peer while the registry is still reachable: the namespace has no route out."""
    try:
        janus.ensure_installed()
    except ScenarioError as exc:
        print(f"janus: {exc} (the Janus half of each result will carry this error)", file=sys.stderr)


def _reexec_in_netns() -> None:
    if os.environ.get("RAYSFU_NETNS") == "1" or os.geteuid() != 0:
        return
    script = REPO / "scripts" / "netns-run"
    os.execvp("bash", ["bash", str(script), sys.executable, "-m", "bench", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=(*ORDER, "all", "soak"))
    parser.add_argument("--json", type=Path, help="write the result(s) here")
    parser.add_argument("--duration", type=float, default=20.0, help="measurement window, s (default 20)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no Janus: checks the harness only")
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        help="audio-room/fanout sizes instead of the defaults (e.g. 18,20: the largest room that fits)",
    )
    parser.add_argument("--log-dir", type=Path, help="server logs (default: a temp dir)")
    parser.add_argument("--minutes", type=float, default=30.0, help="soak: minutes of churn (default 30)")
    args = parser.parse_args(argv)
    if argv is None:
        if not args.smoke and args.scenario in JANUS_SCENARIOS:
            _install_janus()
        _reexec_in_netns()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="raysfu-bench-"))
    duration = min(args.duration, 5.0) if args.smoke else args.duration
    opts = Options(duration=duration, log_dir=log_dir, smoke=args.smoke, sizes=args.sizes)
    names = ORDER if args.scenario == "all" else (args.scenario,)

    def soak(o: Options) -> list[dict[str, Any]]:
        return run_soak(o, args.minutes)

    runners = {**SCENARIOS, "relay-nodes": run_relay_nodes, "soak": soak}
    out: list[dict[str, Any]] = []
    failed = 0
    started = time.monotonic()
    for name in names:
        print(f"== {name} (logs in {log_dir})", file=sys.stderr, flush=True)
        try:
            produced = runners[name](opts)
            out.extend(produced if isinstance(produced, list) else [produced])
        except ScenarioError as exc:
            failure = results.new_result(name)
            failure["error"] = str(exc)
            out.append(failure)
            print(f"{name}: FAILED: {exc}", file=sys.stderr, flush=True)
    for item in out:
        if item.get("error") and not any(item.get(k) is not None for k in results.REQUIRED_KEYS[3:]):
            failed += 1
        problems = results.check(item)
        if problems:
            print(f"{item['scenario']}: malformed result: {problems}", file=sys.stderr)
            failed += 1
    document: Any = out[0] if len(out) == 1 else out
    text = results.write(document, args.json)
    print(text)
    print(f"== done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
