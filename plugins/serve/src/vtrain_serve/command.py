"""``vtrain serve``: parse the arguments, print the address (and the token off loopback), serve until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtrain.errors import ConfigError, Problem


def run_serve_command(argv: list[str]) -> int:
    """Serve the dashboard for the runs under the given folders (default: ``.``)."""
    parser = argparse.ArgumentParser(prog="vtrain serve", description="A local web dashboard: watch, compare, "
                                     "start and stop the runs under DIR (default: the current folder).")
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="folders holding run output folders")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other address requires the printed token)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    args = parser.parse_args(argv)
    from vtrain_serve.app import LOOPBACK, Dashboard, make_server, new_token

    roots = [Path(d) for d in args.dirs] or [Path(".")]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise ConfigError([Problem(f"vtrain serve {' '.join(missing)}", "no such folder",
                                   "give folders that hold run output folders (or will)")])
    token = None if args.host in LOOPBACK else new_token()
    dashboard = Dashboard(roots, args.host, token)
    try:
        server = make_server(dashboard, args.port)
    except OSError as error:
        raise ConfigError([Problem(f"--host {args.host} --port {args.port}", f"cannot listen there ({error.strerror})",
                                   "choose another --port (0 picks a free one)")]) from None
    port = server.server_address[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"vtrain serve: {', '.join(str(r.resolve()) for r in dashboard.roots)}", flush=True)
    if token:
        print(f"  bound to {args.host}: every request needs this token (keep it private)", flush=True)
    print(f"  open {url}   (Ctrl-C stops the dashboard; runs started from it keep running)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
