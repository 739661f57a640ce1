#!/usr/bin/env python3
"""A small custom backend for waldur-site-agent's `command` backend (protocol 1).

One request on stdin, one response on stdout, then exit. The "site" is a JSON file
(`settings.state_file`), locked while a call runs, so concurrent calls of the agent are safe.
It implements every operation of docs/backends/command.md; a real one would call its site's
API or CLI where this one edits the file.

    backend_settings:
      command: /usr/bin/python3
      args: [/opt/site/site_backend.py]
      settings: {state_file: /var/lib/site/state.json}
"""

import fcntl
import json
import os
import sys

PROTOCOL = 1


class Fail(Exception):
    def __init__(self, cls, message, **extra):
        super().__init__(message)
        self.cls, self.message, self.extra = cls, message, extra


def info(backend_id, r):
    return {
        "backend_id": backend_id,
        "parent_id": r["parent"],
        "users": sorted(r["users"]),
        "limits": r["limits"],
        "backend_metadata": {"paused": r["paused"], "downscaled": r["downscaled"]},
        "endpoints": [],
    }


def existing(state, resource):
    r = state["resources"].get(resource["backend_id"])
    if r is None:
        raise Fail("permanent", f"no resource '{resource['backend_id']}'")
    return r


def set_flag(state, resource, paused, downscaled):
    r = existing(state, resource)
    changed = (r["paused"], r["downscaled"]) != (paused, downscaled)
    r["paused"], r["downscaled"] = paused, downscaled
    return changed


def handle(op, p, state):
    resources = state["resources"]
    if op == "ping":
        return None
    if op == "pull_resource":
        r = resources.get(p["resource"]["backend_id"])
        return None if r is None else info(p["resource"]["backend_id"], r)
    if op == "pull_resources":
        found = {}
        for res in p["resources"]:
            r = resources.get(res["backend_id"])
            if r is not None:
                found[res["backend_id"]] = info(res["backend_id"], r)
        return found
    if op == "create_resource":
        bid = p["backend_id"]
        if bid in resources:
            raise Fail("duplicate", f"'{bid}' exists", backend_id=bid)
        resources[bid] = {
            "parent": p["resource"].get("project_slug", ""),
            "limits": p["resource"].get("limits", {}),
            "users": [],
            "paused": False,
            "downscaled": False,
            "user_limits": {},
        }
        return info(bid, resources[bid])
    if op == "set_limits":
        existing(state, p["resource"])["limits"] = p["limits"]
        return None
    if op == "delete_resource":
        resources.pop(p["resource"]["backend_id"], None)
        return None
    if op == "add_users":
        r = existing(state, p["resource"])
        names = [u["username"] for u in p["users"]]
        r["users"] = sorted(set(r["users"]) | set(names))
        return names
    if op == "remove_users":
        r = resources.get(p["resource"]["backend_id"])
        if r is not None:
            r["users"] = [u for u in r["users"] if u not in p["usernames"]]
        return p["usernames"]
    if op == "pause":
        return set_flag(state, p["resource"], True, existing(state, p["resource"])["downscaled"])
    if op == "downscale":
        return set_flag(state, p["resource"], existing(state, p["resource"])["paused"], True)
    if op == "restore":
        return set_flag(state, p["resource"], False, False)
    if op == "resource_metadata":
        r = resources.get(p["resource"]["backend_id"])
        return {} if r is None else {"parent": r["parent"]}
    if op == "usage_report":
        month = "%04d-%02d" % (p["period"]["year"], p["period"]["month"])
        usage = state.get("usage", {})
        return {bid: usage[bid][month] for bid in p["backend_ids"]
                if month in usage.get(bid, {})}
    if op == "get_username":
        return state.get("usernames", {}).get(p["user"]["user_username"])
    if op == "generate_username":
        name = p["user"]["user_username"].split("@")[0].lower()
        state.setdefault("usernames", {})[p["user"]["user_username"]] = name
        return name
    raise Fail("unsupported", f"operation '{op}' is not implemented")


def main():
    request = json.load(sys.stdin)
    if request.get("protocol") != PROTOCOL:
        raise Fail("config", f"protocol {request.get('protocol')} is not {PROTOCOL}")
    settings = request.get("settings") or {}
    if settings.get("site_down"):
        raise Fail("transient", "the site is down for maintenance")
    path = settings.get("state_file", "site-state.json")
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        text = f.read()
        state = json.loads(text) if text.strip() else {}
        state.setdefault("resources", {})
        result = handle(request["operation"], request.get("params") or {}, state)
        f.seek(0)
        f.truncate()
        json.dump(state, f)
    return result


if __name__ == "__main__":
    try:
        answer = {"protocol": PROTOCOL, "ok": True, "result": main()}
    except Fail as e:
        answer = {"protocol": PROTOCOL, "ok": False,
                  "error": {"class": e.cls, "message": e.message, **e.extra}}
    except Exception as e:  # a bug here must not look like success
        answer = {"protocol": PROTOCOL, "ok": False,
                  "error": {"class": "permanent", "message": f"{type(e).__name__}: {e}"}}
    print(json.dumps(answer))
