"""Prepares a site as the upstream Rancher plugin (waldur-site-agent-rancher, PyPI) leaves it:
one resource created with Keycloak enabled and alice added. Prints the resource's backend id
(the Rancher project id upstream records in Waldur) as the last line.

Env: SIM_INFO (a JSON file with the doubles' URLs and credentials, as `site-sim rancher` prints).
"""

import json
import os
import uuid

from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
from waldur_site_agent_rancher.backend import RancherBackend

i = json.load(open(os.environ["SIM_INFO"]))
backend = RancherBackend(
    {
        "backend_url": i["url"], "username": i["access_key"], "password": i["secret_key"],
        "cluster_id": i["cluster_id"], "verify_cert": False, "keycloak_enabled": True,
        "keycloak_use_user_id": False, "namespace_labels": {"gpu-pool": "h100-2x"},
        "keycloak": {"keycloak_url": i["keycloak_url"] + "/", "keycloak_realm": "waldur",
                     "keycloak_user_realm": "master", "keycloak_username": i["keycloak_username"],
                     "keycloak_password": i["keycloak_password"], "keycloak_ssl_verify": False},
    },
    {
        "cpu": {"type": "cpu", "measured_unit": "cores", "accounting_type": "limit", "label": "CPU"},
        "memory": {"type": "ram", "measured_unit": "GB", "accounting_type": "limit", "label": "RAM"},
    },
)
resource = Resource(
    uuid=uuid.uuid4(), name="Legacy", slug="legacy", customer_slug="uni", customer_name="University",
    project_slug="physics", project_name="Physics",
    limits=ResourceLimits.from_dict({"cpu": 2, "memory": 4}),
)
info = backend.create_resource_with_id(resource, "")
resource.backend_id = info.backend_id
assert backend.add_user(resource, "alice")
print(info.backend_id)
