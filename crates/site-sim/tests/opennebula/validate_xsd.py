"""Validates every XML document the OpenNebula double answered (a JSON list of strings, from
/__sim/opennebula/recorded) against OpenNebula's XSDs vendored in ./xsd, picked by the root
element. OpenNebula's documents carry no namespace while the XSDs declare one, so the root gets
xmlns="http://opennebula.org/XMLSchema" before validation (as the XSD README describes).
Prints PASS/FAIL lines and "N passed, M failed"; exits non-zero on a failure or no documents.
"""
import json
import os
import re
import sys

import xmlschema

HERE = os.path.dirname(os.path.abspath(__file__))
ROOTS = {
    "GROUP": "group", "GROUP_POOL": "group_pool", "USER": "user", "USER_POOL": "user_pool",
    "VDC": "vdc", "VDC_POOL": "vdc_pool", "CLUSTER": "cluster", "CLUSTER_POOL": "cluster_pool",
    "VNET": "vnet", "VNET_POOL": "vnet_pool", "VROUTER": "vrouter", "VROUTER_POOL": "vrouter_pool",
    "SECURITY_GROUP": "security_group", "SECURITY_GROUP_POOL": "security_group_pool",
    "VMTEMPLATE": "vmtemplate", "VMTEMPLATE_POOL": "vmtemplate_pool", "IMAGE": "image",
    "IMAGE_POOL": "image_pool", "VM": "vm", "VM_POOL": "vm_pool",
}
schemas = {}
docs = json.load(open(sys.argv[1]))
passed = failed = 0
seen = {}
for doc in docs:
    m = re.match(r"\s*<([A-Z_]+)>", doc)
    root = m.group(1) if m else None
    name = ROOTS.get(root)
    if name is None:
        failed += 1
        print(f"FAIL: a document with no vendored XSD: {doc[:80]}")
        continue
    if name not in schemas:
        schemas[name] = xmlschema.XMLSchema(os.path.join(HERE, "xsd", name + ".xsd"))
    namespaced = doc.replace(f"<{root}>", f'<{root} xmlns="http://opennebula.org/XMLSchema">', 1)
    errors = list(schemas[name].iter_errors(namespaced))
    if errors:
        failed += 1
        print(f"FAIL: {root}: {errors[0].reason} at {errors[0].path}\n  {doc[:300]}")
    else:
        passed += 1
        seen[root] = seen.get(root, 0) + 1
print("validated: " + ", ".join(f"{k} x{v}" for k, v in sorted(seen.items())))
missing = sorted(set(ROOTS) - set(seen))
if missing:
    print(f"NOTE: no document of {missing} was returned in this scenario")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
