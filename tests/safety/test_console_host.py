"""The console's Host check (issue 13, item 14): with `server.allowedHosts` in
.streamlit/config.toml, Streamlit refuses a WebSocket whose Host header is not a local name, which
closes DNS rebinding (a page on another name re-resolved to 127.0.0.1)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

CHECK = """
import json
from streamlit import config
from streamlit.web.server.starlette.starlette_websocket import is_host_allowed
config.get_config_options(force_reparse=True)  # reads ./.streamlit/config.toml
hosts = ["localhost:8501", "127.0.0.1:8501", "[::1]:8501", "LOCALHOST", "evil.example:8501",
         "127.0.0.1.nip.io", "localhost.evil.example", None]
print(json.dumps({str(h): is_host_allowed(h) for h in hosts}))
"""


def test_only_local_host_headers_reach_the_app():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == {
        "localhost:8501": True, "127.0.0.1:8501": True, "[::1]:8501": True, "LOCALHOST": True,
        "evil.example:8501": False, "127.0.0.1.nip.io": False, "localhost.evil.example": False,
        "None": False}
