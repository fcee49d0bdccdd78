"""The ceiling for `bench.server`: the least a waitress+Flask webhook can do.

    python -m bench.ceiling --port 8080

Plain HTTP, waitress's default settings, no logging, no metrics, no envelope checks:
it parses the review and answers with the same pure core (`app.admission.review`) as
the real server, so the two differ only in what the real server adds around it (TLS,
the front's limits, logs, metrics).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from flask import Flask, request
from waitress import serve

from app.admission import review
from app.admission.policy import LabelPolicy


def create_ceiling_app(policy: LabelPolicy) -> Flask:
    app = Flask(__name__)

    @app.post("/mutate")
    def mutate() -> dict[str, Any]:
        return review(request.get_json(), policy).response

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # "Task queue depth is N" under load: the ceiling logs nothing.
    logging.getLogger("waitress").setLevel(logging.ERROR)
    serve(create_ceiling_app(LabelPolicy()), host=args.host, port=args.port, _quiet=True)


if __name__ == "__main__":
    main()
