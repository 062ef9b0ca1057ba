"""`python -m fakeclaude`: serve the demo persona on a free loopback port.

Prints one line, `fakeclaude listening on http://127.0.0.1:PORT`, once the socket accepts connections,
and stops when its standard input closes (the parent process ended or let it go), so it never outlives
the app that started it. Pacing comes from TOLLGATE_DEMO_* (fakeclaude/settings.py).
"""

from __future__ import annotations

import sys

from fakeclaude.server import DemoModelServer
from fakeclaude.settings import DemoSettings

READY = "fakeclaude listening on "


def main() -> int:
    server = DemoModelServer(settings=DemoSettings.from_env())
    base_url = server.start()
    print(READY + base_url, flush=True)
    try:
        while sys.stdin.buffer.read(4096):  # until EOF: the parent closed the pipe
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
