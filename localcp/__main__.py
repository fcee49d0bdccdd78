"""python -m localcp {up,down,status}"""

from __future__ import annotations

import argparse

from localcp import controlplane


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcp",
        description="A real local Kubernetes control plane with cert-manager and the webhook.",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    command = parser.parse_args().command
    if command == "up":
        controlplane.up()
    elif command == "down":
        controlplane.down()
    else:
        return controlplane.status()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
