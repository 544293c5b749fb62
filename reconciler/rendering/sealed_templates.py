"""The sealed child that renders Jinja templates: `python -I -m reconciler.rendering.sealed_templates`.

It reads one JSON request on stdin (checkout root, workload directory, variables, limits, template
names), renders each template with `LocalTemplates`, and writes one JSON answer on stdout. It runs
inside the seal (providers/sealed.py): as the runner user, with no network, only the checkout to
read and a memory limit, so a template that escapes the Jinja sandbox or exhausts memory harms only
itself. `-I` keeps the checkout (its working directory) off `sys.path`: a repo cannot shadow our
modules with its own.
"""

from __future__ import annotations

import json
import sys

from reconciler.rendering.templates import serve_request


def main() -> int:
    request = json.load(sys.stdin)
    answer = serve_request(request)
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
