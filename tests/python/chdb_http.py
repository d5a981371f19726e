"""Current ClickHouse (chDB: ClickHouse's engine in this process) behind the small
part of ClickHouse's HTTP interface tokentop uses: POST / with the statement in the
body, or `INSERT ... FORMAT F` in ?query= with the rows (any format, RowBinary too)
in the body; the answer's text, HTTP 500 with ClickHouse's message on an error. Settings in the URL (max_execution_time, ...) are
ignored. One statement at a time (a chDB session is not thread-safe).

Usage: chdb_http.py DATA_DIR PORT   (prints "listening" once it answers)
"""

import re
import sys
import tempfile
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

from chdb import session

DATA, PORT = sys.argv[1], int(sys.argv[2])
SESSION = session.Session(DATA)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        params = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = params.get("query", [""])[0]
        try:
            if query:
                # The rows go through a file: chDB reads INSERT data FROM INFILE.
                with tempfile.NamedTemporaryFile(dir=DATA, suffix=".rows") as f:
                    f.write(body)
                    f.flush()
                    sql = re.sub(r"\bFORMAT\b", f"FROM INFILE '{f.name}' FORMAT", query, count=1)
                    out = SESSION.query(sql, "TabSeparated")
            else:
                out = SESSION.query(body.decode(), "TabSeparated")
            data, status = out.bytes() if hasattr(out, "bytes") else bytes(out), 200
        except Exception as e:  # chDB raises its server's error as an exception
            data, status = str(e).encode(), 500
        self.send_response(status)
        self.send_header("Content-Type", "text/tab-separated-values; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", PORT), Handler)
print("listening", flush=True)
server.serve_forever()
