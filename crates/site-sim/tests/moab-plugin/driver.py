"""Drives the upstream MOAB plugin (waldur-site-agent-moab, PyPI) through its lifecycle against the
site-sim MAM double (the mam-* programs first on PATH), calling the backend class the agent's
processors call. Env: MOAB_STATE (the double's state directory, for read-backs).
Prints PASS/FAIL/NOTE lines; exits with the number of failures.
"""

import json
import os
import subprocess
import sys
import uuid

from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
from waldur_site_agent_moab.backend import MoabBackend

STATE = os.path.join(os.environ["MOAB_STATE"], "state.json")
failures = 0


def result(ok, what, detail=""):
    global failures
    if not ok:
        failures += 1
    print(("PASS" if ok else "FAIL") + ": " + what + (f" ({detail})" if detail else ""), flush=True)


def note(what):
    print("NOTE: " + what, flush=True)


def step(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - a step failing must not stop the others
        result(False, name, f"{type(e).__name__}: {e}")


def state():
    with open(STATE) as f:
        return json.load(f)


def fund_of(account):
    return [f for f in state()["funds"].values() if f["account"] == account]


settings = {"project_prefix": "p_", "allocation_prefix": "a_", "default_account": "root"}
components = {"deposit": {"measured_unit": "credits", "accounting_type": "limit", "unit_factor": 1, "label": "Deposit"}}
backend = MoabBackend(settings, components)
resource = Resource(
    uuid=uuid.uuid4(),
    # One word each: the plugin splits its command string on spaces (see split_description).
    name="UpstreamAllocation",
    slug="upstream1",
    customer_slug="acme",
    project_slug="proj1",
    project_name="ProjectOne",
    limits=ResourceLimits.from_dict({"deposit": 100}),
)
account = "a_upstream1"


def ping():
    result(backend.ping() is True, "ping (mam-list-accounts)")


def create():
    info = backend.create_resource(resource)
    resource.backend_id = info.backend_id
    result(info.backend_id == account, "create returns the allocation id", info.backend_id)
    accounts = state()["accounts"]
    result("p_proj1" in accounts, "create: project account")
    result(account in accounts and accounts[account]["organization"] == "p_proj1", "create: allocation account, organization = project")
    desc = accounts.get(account, {}).get("description")
    if desc != resource.name:
        note(f"the plugin passes literal quotes: description {resource.name!r} reached MAM as {desc!r}")
    funds = fund_of(account)
    result(len(funds) == 1, "create: one fund for the account", json.dumps(funds))
    if funds and funds[0]["allocated"] != 100:
        note(f"create deposited {funds[0]['allocated']} (the plugin sets limits after create)")


def deposit():
    backend.set_resource_limits(account, {"deposit": 50})
    funds = fund_of(account)
    result(bool(funds) and funds[0]["allocated"] >= 50, "deposit: mam-deposit -a -z -f", json.dumps(funds))
    note("the plugin deposits the whole limit on every update (the fund grows by the limit each time)")


def add_user():
    added = backend.add_users_to_resource(resource, {"alice"})
    result(added == {"alice"}, "add user (mam-modify-account --add-user +alice)", str(added))
    result("alice" in state()["accounts"][account]["users"], "add user: alice is a member")
    again = backend.add_users_to_resource(resource, {"alice"})
    result(again == {"alice"}, "add user again is a no-op (association found via mam-list-funds -u)")
    users = backend.client.list_resource_users(account)
    result(users == ["alice"], "list users (mam-list-users -a, DefaultAccount set)", str(users))


def usage():
    for amount in ("12.5", "7.5"):
        subprocess.run(["mam-charge", "-a", account, "-u", "alice", "-z", amount], check=True, capture_output=True)
    report = backend._get_usage_report([account])
    got = report.get(account, {})
    result(float(got.get("alice", {}).get("deposit", -1)) == 20.0, "usage per user", json.dumps(got, default=str))
    result(float(got.get("TOTAL_ACCOUNT_USAGE", {}).get("deposit", -1)) == 20.0, "usage total")


def remove_user():
    removed = backend.remove_users_from_resource(resource, {"alice"})
    result(set(removed) == {"alice"}, "remove user (mam-modify-account --del-user)", str(removed))
    result("alice" not in state()["accounts"][account]["users"], "remove user: alice is gone")


def terminate():
    resource.backend_id = account
    backend.delete_resource(resource, project_slug="proj1")
    s = state()
    result(account not in s["accounts"], "terminate: account deleted")
    result(not fund_of(account), "terminate: fund deleted (looked up after the account, as upstream does)")
    result("p_proj1" not in s["accounts"], "terminate: empty project account deleted")


def split_description():
    try:
        backend.client.create_resource("a_spaces", "Two words", "p_proj1")
        desc = state()["accounts"].get("a_spaces", {}).get("description")
        note(f"a description with spaces reached MAM as {desc!r}")
    except Exception as e:  # noqa: BLE001
        note(
            "the plugin splits 'mam-create-account -a n -d \"Two words\" -o org' on spaces, so MAM gets "
            f"'-d \"Two' plus a stray 'words\"' argument, which the double refuses ({e}); the Rust backend "
            "passes the description as one argument"
        )


for name, fn in [("ping", ping), ("split description", split_description), ("create", create), ("deposit", deposit), ("add user", add_user),
                 ("usage", usage), ("remove user", remove_user), ("terminate", terminate)]:
    step(name, fn)
print(f"{failures} failed", flush=True)
sys.exit(failures)
