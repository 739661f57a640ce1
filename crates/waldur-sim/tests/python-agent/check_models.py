"""Parse every simulator response the agent reads with the real py-client models.

The generated SDK rejects objects whose required fields are missing or whose values have the
wrong type (e.g. a null where a UUID is expected), so this is a direct fidelity check.
Usage: python check_models.py DEMO_JSON_FILE
"""
import json
import sys
import urllib.request

from waldur_api_client import models as M

demo = json.load(open(sys.argv[1]))
api = demo["api_url"]
failures = []


def get(path, token):
    req = urllib.request.Request(api + path, headers={"Authorization": "Token " + token})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or "null")


def post(path, token, body):
    req = urllib.request.Request(
        api + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": "Token " + token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or "null")


def check_posted(what, data, model_name):
    """Parse a POST answer with the model, when this client version has it."""
    model = getattr(M, model_name, None)
    if model is None:
        print(f"skip {what} ({model_name} is not in this client)")
        return
    try:
        model.from_dict(data)
        print(f"ok   {what} ({model_name})")
    except Exception as e:  # noqa: BLE001 - report every failure
        failures.append(what)
        print(f"FAIL {what} ({model_name}): {type(e).__name__}: {e}")


def check(path, model, token, many=False):
    try:
        data = get(path, token)
        items = data if many else [data]
        for item in items:
            model.from_dict(item)
        print(f"ok   {path} ({model.__name__}, {len(items)} object(s))")
    except Exception as e:  # noqa: BLE001 - report every failure
        failures.append(path)
        print(f"FAIL {path} ({model.__name__}): {type(e).__name__}: {e}")


prov, cons = demo["provider_token"], demo["consumer_token"]
off, proj = demo["offering_uuid"], demo["project_uuid"]
check("users/me/", M.UserMe, prov)
check("version/", M.Version, prov)
check(f"marketplace-provider-offerings/{off}/", M.ProviderOfferingDetails, prov)
check(f"marketplace-provider-offerings/{off}/user-attribute-config/", M.OfferingUserAttributeConfig, prov)
check(f"marketplace-plans/{demo['plan_uuid']}/", M.ProviderPlanDetails, prov)
check("marketplace-service-providers/", M.ServiceProvider, prov, many=True)
check("marketplace-orders/", M.OrderDetails, prov, many=True)
check("marketplace-provider-resources/", M.Resource, prov, many=True)
check("marketplace-resources/", M.Resource, cons, many=True)
check("marketplace-offering-users/", M.OfferingUser, prov, many=True)
check("marketplace-component-usages/", M.ComponentUsage, prov, many=True)
check("marketplace-component-user-usages/", M.ComponentUserUsage, prov, many=True)
check("projects/", M.Project, cons, many=True)
check(f"projects/{proj}/list_users/", M.UserRoleDetails, cons, many=True)
check("customers/", M.Customer, cons, many=True)
check("users/", M.User, demo["staff_token"], many=True)
check("roles/", M.RoleDetails, prov, many=True)
# Agent identity, service, processor and the unified queue (upstream 1.0.7/1.0.8), so the
# listings below have objects to parse.
identity = post(
    "marketplace-site-agent-identities/",
    prov,
    {"offering": off, "name": f"agent-{off}", "version": "1.0.8", "dependencies": [],
     "config_file_path": "", "config_file_content": ""},
)
check_posted("POST marketplace-site-agent-identities/", identity, "AgentIdentity")
service = post(
    f"marketplace-site-agent-identities/{identity['uuid']}/register_service/",
    prov,
    {"name": "event_process", "mode": "event_process"},
)
check_posted("POST register_service", service, "AgentService")
processor = post(
    f"marketplace-site-agent-services/{service['uuid']}/register_processor/",
    prov,
    {"name": "OfferingOrderProcessor", "backend_type": "slurm", "backend_version": "1.0.8"},
)
check_posted("POST register_processor", processor, "AgentProcessor")
queue = post(
    f"marketplace-site-agent-identities/{identity['uuid']}/register_queue/",
    prov,
    {"object_types": ["order", "resource"]},
)
check_posted("POST register_queue", queue, "AgentQueueRegistrationResponse")
check("marketplace-site-agent-identities/", M.AgentIdentity, prov, many=True)
check("marketplace-site-agent-services/", M.AgentService, prov, many=True)
check("marketplace-site-agent-processors/", M.AgentProcessor, prov, many=True)
check("event-subscriptions/", M.EventSubscription, prov, many=True)
for r in get("marketplace-provider-resources/", prov):
    check(f"marketplace-provider-resources/{r['uuid']}/team/", M.ProjectUser, prov, many=True)
    check(f"marketplace-provider-resources/{r['uuid']}/plan_periods/", M.ResourcePlanPeriod, prov, many=True)
print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
