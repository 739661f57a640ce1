"""python-keycloak's KeycloakAdmin against the Keycloak double: realm, groups and children,
paging, 409 on duplicates, users with exact search, memberships, token refresh.

Env: SIM_INFO (the JSON line `site-sim keycloak` printed).
"""

import json
import os
import sys
import time

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakError

INFO = json.load(open(os.environ["SIM_INFO"]))
failures = 0


def result(ok, what, detail=""):
    global failures
    if not ok:
        failures += 1
    print(("PASS" if ok else "FAIL") + ": " + what + (f" ({detail})" if detail else ""), flush=True)


def step(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        result(False, name, f"{type(e).__name__}: {e}")


conn = KeycloakOpenIDConnection(
    server_url=INFO["url"] + "/", username=INFO["username"], password=INFO["password"],
    realm_name="waldur", user_realm_name="master", client_id="admin-cli", verify=False)
kc = KeycloakAdmin(connection=conn)
ids = {}


def realm():
    r = kc.get_realm("waldur")
    result(r.get("realm") == "waldur", "get_realm")


def groups():
    ids["parent"] = kc.create_group({"name": "c_demo", "attributes": {"managed_by": ["waldur-site-agent"]}})
    result(bool(ids["parent"]), "create_group (id from Location)", ids["parent"])
    ids["child"] = kc.create_group({"name": "project_web_workloads-manage"}, parent=ids["parent"])
    result(bool(ids["child"]), "create_group with parent (children endpoint)")
    for i in range(12):
        kc.create_group({"name": f"extra-{i:02d}"}, parent=ids["parent"])
    try:
        kc.create_group({"name": "c_demo"})
        result(False, "duplicate top-level group is refused")
    except KeycloakError as e:
        result(e.response_code == 409 and b"errorMessage" in e.response_body, "duplicate top-level group: 409 errorMessage", str(e.response_body))
    result(kc.create_group({"name": "c_demo"}, skip_exists=True) is None, "create_group skip_exists on 409")
    try:
        kc.create_group({"name": "extra-03"}, parent=ids["parent"])
        result(False, "duplicate child group is refused")
    except KeycloakError as e:
        result(e.response_code == 409, "duplicate child group: 409", str(e.response_body))
    top = kc.get_groups()
    parent = [g for g in top if g["name"] == "c_demo"]
    result(len(parent) == 1 and len(parent[0]["subGroups"]) == 13, "get_groups: children fetched through subGroupCount (Keycloak >= 23)",
           str(len(parent[0]["subGroups"]) if parent else None))
    kids = kc.get_group_children(ids["parent"])
    result(len(kids) == 13, "get_group_children pages past the default 10", str(len(kids)))
    page = kc.get_group_children(ids["parent"], {"first": 10, "max": 10})
    result(len(page) == 3, "get_group_children first/max", str(len(page)))
    g = kc.get_group_by_path("/c_demo/project_web_workloads-manage")
    result(g and g["id"] == ids["child"], "get_group_by_path for a child group")
    g = kc.get_group(ids["child"])
    result(g["path"] == "/c_demo/project_web_workloads-manage" and g.get("parentId") == ids["parent"], "get_group", json.dumps(g)[:200])
    count = kc.groups_count()
    result(count == {"count": 14}, "groups_count (every group)", str(count))
    top = kc.groups_count({"top": "true"})
    result(top == {"count": 1}, "groups_count top=true", str(top))


def users():
    u = kc.get_users({"username": "alice", "exact": True})
    result(len(u) == 1 and u[0]["username"] == "alice", "get_users exact")
    result(kc.get_users({"username": "ali", "exact": True}) == [], "get_users exact: no prefix match")
    result(len(kc.get_users({"search": "a"})) >= 2, "get_users search")
    ids["alice"] = u[0]["id"]
    result(kc.get_user(ids["alice"])["username"] == "alice", "get_user by id")
    try:
        kc.get_user("no-such-id")
        result(False, "get_user of an unknown id fails")
    except KeycloakError as e:
        result(e.response_code == 404, "get_user of an unknown id: 404")
    new = kc.create_user({"username": "erin", "enabled": True})
    result(bool(new), "create_user")
    result(kc.create_user({"username": "erin", "enabled": True}, exist_ok=True) == new, "create_user exist_ok on 409")
    result(kc.get_user_id("erin") == new, "get_user_id")
    result(kc.users_count() >= 5, "users_count", str(kc.users_count()))


def memberships():
    kc.group_user_add(ids["alice"], ids["child"])
    members = kc.get_group_members(ids["child"])
    result([m["username"] for m in members] == ["alice"], "group_user_add + get_group_members")
    ug = kc.get_user_groups(ids["alice"])
    result([g["name"] for g in ug] == ["project_web_workloads-manage"], "get_user_groups", json.dumps(ug)[:200])
    kc.group_user_remove(ids["alice"], ids["child"])
    result(kc.get_group_members(ids["child"]) == [], "group_user_remove")


def refresh():
    time.sleep(2.5)  # the double runs with --token-lifespan 2
    result(kc.get_realm("waldur")["realm"] == "waldur", "expired access token refreshed")


def cleanup():
    kc.delete_group(ids["parent"])
    result(kc.get_groups() == [], "delete_group removes the subtree")
    try:
        kc.delete_group(ids["parent"])
        result(False, "deleting a gone group fails")
    except KeycloakError as e:
        result(e.response_code == 404, "deleting a gone group: 404")


for name, fn in [("realm", realm), ("groups", groups), ("users", users), ("memberships", memberships),
                 ("token refresh", refresh), ("cleanup", cleanup)]:
    step(name, fn)
print(f"{failures} failed", flush=True)
sys.exit(min(failures, 100))
