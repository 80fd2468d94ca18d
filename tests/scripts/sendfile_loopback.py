"""Serves a file over loopback TCP with Python's socket.sendfile, to a reader thread in the
same process: `python3 sendfile_loopback.py FILE`. Prints the bytes received on stderr (stdout is the tracer's)."""
import socket
import sys
import threading

path = sys.argv[1]
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", 0))
server.listen(1)
received = []


def reader():
    conn, _ = server.accept()
    total = 0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        total += len(data)
    received.append(total)
    conn.close()


t = threading.Thread(target=reader)
t.start()
client = socket.create_connection(server.getsockname())
with open(path, "rb") as f:
    client.sendfile(f)
client.close()
t.join()
print(received[0], file=sys.stderr)
