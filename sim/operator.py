"""`python -m sim.operator ...`: the operator CLI (`edge-billing`, chalicelib's) with the local stack plugged in.

The product never imports the simulator: `cutover preflight|arm|rollback --stage local` ask for the local
stack through a port (`LocalStack` in chalicelib/entrypoints/cli_cutover.py), and this local entry point
provides it, from sim/stack.py: the running app's URL, and restarting only the app so new flags apply.
"""

from __future__ import annotations

from sim import stack


class SimLocalStack:
    """sim/stack.py's running stack, as the operator CLI's LocalStack port."""

    def api_url(self) -> str | None:
        info = stack.running()
        return info.api_url if info else None

    def restart_app(self) -> str | None:
        info = stack.restart_app()
        return info.api_url if info else None


def main() -> None:
    from chalicelib.entrypoints.cli import main as edge_billing

    edge_billing(local_stack=SimLocalStack())


if __name__ == "__main__":
    main()
