"""``gibbsdream serve``: a local web page for playing with the generative process."""

from __future__ import annotations

from pathlib import Path

import click

from ..devices import resolve_device
from ..errors import UsageError
from .common import (
    DEVICE_HELP,
    _positive,
    _say,
    app,
)
from .params import option

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command("serve")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@option(
    "--host", default="127.0.0.1", help="Address to listen on. Anything but 127.0.0.1 lets other machines use the page."
)
@option("--port", default=7860, help="Port to listen on (0: any free port).")
@option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Another host name the page may be opened by (besides 127.0.0.1, localhost, [::1] and --host); repeatable. "
    "Requests naming any other host are refused, so that pages elsewhere cannot reach this one by DNS rebinding.",
)
@option(
    "--max-jobs", default=2, help="Sampling jobs running at once, over all visitors; more are refused until one ends."
)
@option("--max-steps", default=2000, help="Most Gibbs steps (or sweeps) one job may ask for.")
@option("--max-chains", default=256, help="Most parallel chains one string job may ask for.")
@option("--device", default="auto", help=DEVICE_HELP)
@option("--quiet", "-q", is_flag=True, help="Print only the page's address.")
def serve_command(checkpoints, host, port, allow_hosts, max_jobs, max_steps, max_chains, device, quiet):
    """Open a local web page to paint holes and watch them fill in, or to dream strings.

    Image models (Orderless NADE) inpaint a hole painted with the mouse, live, step by step;
    string models (RBMs) show their samples with energies and the energy over the sweeps. The
    page loads nothing from the internet and listens on this machine only unless --host says
    otherwise.

    \b
    Examples:
      gibbsdream serve runs/digits runs/regions
      gibbsdream serve runs/shapes --port 0 --max-jobs 4
    """
    # FastAPI and uvicorn (0.2 s) load only for `serve`, not for every command
    from ..web import Limits, bind, create_app, load_models
    from ..web.guard import host_key
    from ..web.server import serve, url_of

    limits = Limits(
        max_jobs=_positive("max-jobs", max_jobs),
        max_steps=_positive("max-steps", max_steps),
        max_chains=_positive("max-chains", max_chains),
    )
    try:
        resolve_device(device)
    except RuntimeError:
        raise UsageError(f"--device must be auto, cpu or cuda (or cuda:N), got {device!r}") from None
    for name in allow_hosts:
        try:
            host_key(name)
        except UsageError:
            raise UsageError(
                f"--allow-host takes a bare host name or IP address (no scheme, port or path), got {name!r}"
            ) from None
    sock = bind(host, port)  # before loading models: a busy port should fail fast
    try:
        models = load_models(checkpoints, device)
        url = url_of(sock)
        if not quiet:
            for m in models:
                about = m.describe()
                what = (
                    about["description"] if about["kind"] == "image" else f"strings of {about['positions']} characters"
                )
                _say(f"model {m.name}: {what} ({m.checkpoint.path})")
            if host not in LOOPBACK:
                _say(
                    f"note: listening on {host}, so other machines that can reach this one can use the page "
                    "(by that address; add --allow-host NAME for each other name it is reached by)"
                )
        click.echo(f"gibbsdream is serving {len(models)} model(s) at {url}  (Ctrl+C to stop)")
        serve(create_app(models, limits, allowed_hosts=(host, *allow_hosts)), sock)
    finally:
        sock.close()
