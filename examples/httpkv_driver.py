#!/usr/bin/env python3
"""An example faultline client driver (docs/exec-protocol.md) for systems speaking http-kv.

faultline writes one JSON request per line on stdin:
    {"id": 7, "f": "read"|"write"|"cas"|"read-local"|"status", "key": "r3", "value": ...,
     "node": "n2", "addr": "127.0.0.1:7001"}
and reads one JSON answer per line on stdout, in any order:
    {"id": 7, "type": "ok"|"fail"|"info", "value": ..., "error": "...", "node": "n3"}
("node": the node that answered, when a not-leader redirect was followed; "status" answers
{"role": ..., "term": ..., "leader": ...}, the node's own view from its /status.)

"fail" means the operation definitely did not take effect; "info" that it may have. Requests
are handled concurrently, each in its own thread. Standard library only.
"""
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

write_lock = threading.Lock()


def answer(msg):
    with write_lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def call(method, url, body=None, timeout=2.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None


def role_of(req):
    """The node's own view of its role: {"role": ..., "term": ..., "leader": ...}."""
    status, body = call("GET", "http://%s/status" % req["addr"], timeout=0.3)
    if status != 200 or not isinstance(body, dict):
        return answer({"id": req["id"], "type": "info", "error": "status %s" % status})
    view = {k: body.get(k) for k in ("role", "term", "leader")}
    return answer({"id": req["id"], "type": "ok", "value": view})


def fingerprint_of(req):
    """The node's applied index and state digest, from one /status snapshot."""
    status, body = call("GET", "http://%s/status" % req["addr"], timeout=1.0)
    if status != 200 or not isinstance(body, dict):
        return answer({"id": req["id"], "type": "info", "error": "status %s" % status})
    value = {"position": body.get("applied_index"), "fingerprint": body.get("state_digest")}
    return answer({"id": req["id"], "type": "ok", "value": value})


# Node names by address, learnt from the requests (each names its node and address).
node_at = {}


def handle(req):
    rid, f, key = req["id"], req["f"], req["key"]
    node_at[req["addr"]] = req["node"]
    answered_by = None
    if f in ("status", "fingerprint"):
        try:
            return role_of(req) if f == "status" else fingerprint_of(req)
        except Exception as e:  # the node did not answer: no view this time
            return answer({"id": rid, "type": "info", "error": repr(e)})
    base = "http://%s/kv/%s" % (req["addr"], urllib.parse.quote(key, safe=""))
    try:
        for _ in range(4):  # follow not-leader redirects
            if f == "read":
                status, body = call("GET", base)
            elif f == "read-local":
                status, body = call("GET", base + "?local=true")
            elif f == "write":
                status, body = call("PUT", base, {"value": req["value"]})
            elif f == "cas":
                frm, to = req["value"]
                status, body = call("POST", base + "/cas", {"from": frm, "to": to})
            else:
                return answer({"id": rid, "type": "fail", "error": "unsupported"})
            if status == 503 and body and body.get("error") == "not-leader" and body.get("leader_addr"):
                base = "http://%s/kv/%s" % (body["leader_addr"], urllib.parse.quote(key, safe=""))
                # Say which node answered, if a request has named the one at that address.
                answered_by = node_at.get(body["leader_addr"])
                continue
            break
        if 200 <= status < 300:
            value = body.get("value") if f in ("read", "read-local") else req["value"]
            msg = {"id": rid, "type": "ok", "value": value}
            if answered_by:
                msg["node"] = answered_by
            return answer(msg)
        error = (body or {}).get("error", str(status))
        unknown = status in (500, 504) or (body or {}).get("outcome") == "unknown"
        return answer({"id": rid, "type": "info" if unknown else "fail", "error": error})
    except urllib.error.URLError as e:
        # Refused before sending: definitely not executed; anything else: unknown.
        refused = isinstance(e.reason, ConnectionRefusedError)
        return answer({"id": rid, "type": "fail" if refused else "info", "error": str(e.reason)})
    except Exception as e:  # timeouts, resets: the request may have been executed
        return answer({"id": rid, "type": "info", "error": repr(e)})


for line in sys.stdin:
    line = line.strip()
    if line:
        threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()
