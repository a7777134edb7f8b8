# Measures issue 14 item 8: peak RSS of a relay holding N deliveries of
# 16 KiB events that all wait for a retry (receiver down). Usage:
#   python3 benches/retry_backlog.py target/release/relay 100000
# Needs ~1.6 GB of disk under /tmp/rss; prints VmHWM/VmRSS.
import json, os, socket, subprocess, sys, tempfile, time, urllib.request
relay_bin, n = sys.argv[1], int(sys.argv[2])
os.makedirs("/tmp/rss", exist_ok=True)
d = tempfile.mkdtemp(dir="/tmp/rss")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); closed = s.getsockname()[1]; s.close()
open(f"{d}/relay.yaml", "w").write(f"""listen: 127.0.0.1:{port}
storage: {{ sqlite: {d}/relay.db }}
auth: {{ tokens: [{{ name: i, token: t-ingest-0123456789, role: admin }}] }}
network: {{ allow_private: [127.0.0.0/8], allow_http: true }}
limits: {{ max_body_bytes: 8388608 }}
delivery: {{ retry_base_ms: 200000 }}
webhooks:
  - name: Down
    url: http://127.0.0.1:{closed}/
    retry_count: 10
""")
p = subprocess.Popen([relay_bin, "serve", "--config", f"{d}/relay.yaml"], stderr=open(f"{d}/log", "w"))
def get(path):
    return urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Bearer t-ingest-0123456789"}), timeout=60).read()
for _ in range(600):
    try: get("/healthz"); break
    except Exception: time.sleep(0.1)
blob = "x" * 16384
t0 = time.time()
for b in range(n // 100):
    body = json.dumps([{"type": "x", "id": f"e{b}-{i}", "data": {"blob": blob}} for i in range(100)]).encode()
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/events", data=body, headers={"Authorization": "Bearer t-ingest-0123456789", "Content-Type": "application/json"}), timeout=60).read()
posted = time.time() - t0
def retrying():
    for l in get("/metrics").decode().splitlines():
        if l.startswith('relay_delivery_attempts_total{status="retrying"}'):
            return int(l.rsplit(" ", 1)[1])
    return 0
while retrying() < n:
    time.sleep(0.5)
st = open(f"/proc/{p.pid}/status").read()
rss = [l for l in st.splitlines() if l.startswith(("VmRSS", "VmHWM"))]
print(f"{n} events of 16 KiB posted in {posted:.1f} s, all {n} deliveries retrying; {rss}")
p.terminate(); p.wait()
import shutil; shutil.rmtree(d)
