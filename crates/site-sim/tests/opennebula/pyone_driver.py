"""pyone (OpenNebula's own Python binding, PyPI) drives the site-sim OpenNebula double through
every pool and method the backend and the upstream plugin use, including the error answers.
Prints PASS/FAIL lines; exits non-zero on a failure.

Env: ONE_URL, ONE_CREDENTIALS (oneadmin:password).
"""
import base64
import json
import os
import sys
import time
import urllib.request

import pyone

URL = os.environ["ONE_URL"]
CRED = os.environ["ONE_CREDENTIALS"]
ADMIN = URL.rsplit("/RPC2", 1)[0] + "/__sim/opennebula"
failed = 0


def check(name, cond, detail=""):
    global failed
    if cond:
        print(f"PASS: {name}")
    else:
        failed += 1
        print(f"FAIL: {name} {detail}")


def admin(path, body):
    req = urllib.request.Request(
        ADMIN + path,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(CRED.encode()).decode(),
        },
        method="POST",
    )
    urllib.request.urlopen(req).read()


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return str(e)
    return None


def wait_vm(one, vm, state, lcm=None, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        i = one.vm.info(vm)
        if i.STATE == state and (lcm is None or i.LCM_STATE == lcm):
            return i
        time.sleep(0.1)
    return one.vm.info(vm)


one = pyone.OneServer(URL, session=CRED)
bad = pyone.OneServer(URL, session="oneadmin:wrong")
msg = raises(pyone.OneAuthenticationException, bad.vdcpool.info)
check("a wrong password is an authentication error", msg and "couldn't be authenticated" in msg, msg)

check("vdcpool lists the default VDC", [v.NAME for v in one.vdcpool.info().VDC] == ["default"])
check("clusterpool lists the demo clusters", [c.ID for c in one.clusterpool.info().CLUSTER] == [0, 100])

g = one.group.allocate("waldur_pyone")
msg = raises(pyone.OneInternalException, one.group.allocate, "waldur_pyone")
check("a taken group name is OneInternalException 'already taken'", msg and f"NAME is already taken by GROUP {g}" in msg, msg)
v = one.vdc.allocate('NAME="waldur_pyone"')
msg = raises(pyone.OneInternalException, one.vdc.allocate, 'NAME="waldur_pyone"')
check("a taken VDC name is 'already taken'", msg and "already taken by Vdc" in msg, msg)
one.vdc.addgroup(v, g)
msg = raises(pyone.OneInternalException, one.vdc.addgroup, v, g)
check("a second addgroup is 'already assigned'", msg and "already assigned" in msg, msg)
one.vdc.addcluster(v, 0, 0)
one.vdc.addcluster(v, 0, 100)
msg = raises(pyone.OneInternalException, one.vdc.addcluster, v, 0, 0)
check("a second addcluster is 'already assigned'", msg and "CLUSTER 0 from Zone 0 is already assigned" in msg, msg)
vi = one.vdc.info(v)
check("the VDC holds its group and clusters", vi.GROUPS.ID == [g] and [c.CLUSTER_ID for c in vi.CLUSTERS.CLUSTER] == [0, 100])

one.group.quota(g, 'VM=[CPU="4", MEMORY="8192", VMS="-1"]\nDATASTORE=[ID="-1", SIZE="20480", IMAGES="-1"]\nNETWORK=[ID="-1", LEASES="2"]')
gi = one.group.info(g)
check("group quota limits read back", (gi.VM_QUOTA.VM[0].CPU, gi.VM_QUOTA.VM[0].MEMORY, gi.DATASTORE_QUOTA.DATASTORE[0].SIZE, gi.NETWORK_QUOTA.NETWORK[0].LEASES) == ("4", "8192", "20480", "2"))
admin("/quota-usage", {"group": "waldur_pyone", "cpu": 1.5, "memory": 1024, "size": 300, "leases": 1, "datastore": "-1", "network": "-1"})
gi = one.group.info(g)
got = (gi.VM_QUOTA.VM[0].CPU_USED, gi.VM_QUOTA.VM[0].MEMORY_USED, gi.DATASTORE_QUOTA.DATASTORE[0].SIZE_USED, gi.NETWORK_QUOTA.NETWORK[0].LEASES_USED)
check("raised usage counters read back", got == ("1.5", "1024", "300", "1"), str(got))
one.group.update(g, 'SAML_GROUP="/vdc_waldur_pyone/admins"\nFIREEDGE=[DEFAULT_VIEW="groupadmin", VIEWS="groupadmin,user,cloud"]', 1)
check("group template update merges", one.group.info(g).TEMPLATE.get("SAML_GROUP") == "/vdc_waldur_pyone/admins")

vn = one.vn.allocate('NAME="waldur_pyone_internal"\nVN_MAD="vxlan"\nAUTOMATIC_VLAN_ID="YES"\nPHYDEV="eth0"\nAR=[TYPE="IP4", IP="10.0.1.1", SIZE="254"]\nDNS="8.8.8.8"\nGATEWAY="10.0.1.1"', 0)
msg = raises(pyone.OneInternalException, one.vn.allocate, 'NAME="waldur_pyone_internal"\nVN_MAD="vxlan"\nPHYDEV="eth0"', 0)
check("a taken VNet name is 'already taken'", msg and "already taken by NET" in msg, msg)
one.cluster.addvnet(100, vn)
one.vdc.addvnet(v, 0, vn)
check("vn.info and cluster.info", one.vn.info(vn).AR_POOL.AR[0].SIZE == 254 and vn in one.cluster.info(100).VNETS.ID)
nets = {n.NAME: n for n in one.vnpool.info(-2, -1, -1, -1).VNET}
internal = nets["waldur_pyone_internal"]
check("the VXLAN VNet has its address range", internal.AR_POOL.AR[0].IP == "10.0.1.1" and internal.VN_MAD == "vxlan" and internal.CLUSTERS.ID == [0, 100])
msg = raises(pyone.OneNoExistsException, one.vn.info, 9999)
check("a missing VNet is 'Error getting'", msg and "Error getting virtual network [9999]" in msg, msg)

vr = one.vrouter.allocate('NAME="waldur_pyone_router"')
one.vrouter.instantiate(vr, 1, 8, "waldur_pyone_router_vm", False, f'NIC=[NETWORK_ID="{vn}", IP="10.0.1.1"]\nNIC=[NETWORK_ID="10"]')
vr_vm = one.vrouter.info(vr).VMS.ID[0]
first = one.vm.info(vr_vm)
check("a new VM starts PENDING", first.STATE == 1, str(first.STATE))
i = wait_vm(one, vr_vm, 3, 3)
check("the router VM reaches ACTIVE/RUNNING over time", (i.STATE, i.LCM_STATE) == (3, 3), str((i.STATE, i.LCM_STATE)))
check("the router VM holds the gateway lease", i.TEMPLATE["NIC"][0]["IP"] == "10.0.1.1")

sg = one.secgroup.allocate('NAME="waldur_pyone_default"\nRULE=[PROTOCOL="TCP", RULE_TYPE="inbound", RANGE="22:22"]\nRULE=[PROTOCOL="ICMP", RULE_TYPE="inbound", ICMP_TYPE="8"]')
check("security group rules read back", len(one.secgroup.info(sg).TEMPLATE["RULE"]) == 2)

tpl = one.template.info(0)
check("template 0 has a disk image", tpl.TEMPLATE["DISK"]["IMAGE_ID"] == "0")
check("image 0 is READY", one.image.info(0).STATE == 1)
vm = one.template.instantiate(0, "waldur_pyone_vm", False, f'CPU="2"\nVCPU="2"\nMEMORY="2048"\nDISK=[IMAGE_ID="0", SIZE="10240"]\nNIC=[NETWORK_ID="{vn}", SECURITY_GROUPS="{sg}"]\nCONTEXT=[NETWORK="YES", SSH_PUBLIC_KEY="ssh-ed25519 AAAA test"]', False)
one.vm.chown(vm, -1, g)
i = wait_vm(one, vm, 3, 3)
got = (i.STATE, i.LCM_STATE, i.TEMPLATE["VCPU"], i.TEMPLATE["MEMORY"], i.TEMPLATE["DISK"]["SIZE"], i.TEMPLATE["NIC"]["IP"], i.GID)
check("the VM runs with its size, disk and lease", got == (3, 3, "2", "2048", "10240", "10.0.1.2", g), str(got))
check("VM usage counts in the group quota", one.group.info(g).VM_QUOTA.VM[0].CPU_USED == "3.5")
msg = raises(pyone.OneActionException, one.vm.resize, vm, 'CPU="4"', False)
check("resize of a running VM is an action error", msg and "not available for state RUNNING" in msg, msg)
one.vm.action("poweroff-hard", vm)
i = wait_vm(one, vm, 8)
check("poweroff-hard reaches POWEROFF", i.STATE == 8)
one.vm.resize(vm, 'CPU="4"\nVCPU="4"\nMEMORY="4096"', False)
one.vm.diskresize(vm, 0, "20480")
msg = raises(pyone.OneActionException, one.vm.diskresize, vm, 0, "1024")
check("a disk shrink is refused", msg and "greater than current" in msg, msg)
one.vm.action("resume", vm)
i = wait_vm(one, vm, 3, 3)
got = (i.TEMPLATE["VCPU"], i.TEMPLATE["MEMORY"], i.TEMPLATE["DISK"]["SIZE"], i.LCM_STATE)
check("resized and resumed", got == ("4", "4096", "20480", 3), str(got))
check("vmpool lists the VM", vm in [x.ID for x in one.vmpool.info(-2, -1, -1, -1).VM])

admin("/vm-failures", {"name_contains": "waldur_pyone_broken", "state": "BOOT_FAILURE", "count": 1})
broken = one.template.instantiate(0, "waldur_pyone_broken", False, 'CPU="1"\nMEMORY="512"', False)
i = wait_vm(one, broken, 3, 36)
check("a VM told to fail ends in BOOT_FAILURE", (i.STATE, i.LCM_STATE) == (3, 36), str((i.STATE, i.LCM_STATE)))
one.vm.action("terminate-hard", broken)

u = one.user.allocate("waldur_pyone_admin", "s3cret-pass", "core")
msg = raises(pyone.OneInternalException, one.user.allocate, "waldur_pyone_admin", "x", "core")
check("a taken user name is 'already taken'", msg and "already taken by USER" in msg, msg)
one.user.chgrp(u, g)
one.user.update(u, 'WALDUR_PASSWORD="s3cret-pass"', 1)
ui = one.user.info(u)
check("user template and group read back", ui.TEMPLATE.get("WALDUR_PASSWORD") == "s3cret-pass" and ui.GID == g)
check("the password itself is not returned", ui.PASSWORD != "s3cret-pass")
check("the new user authenticates", pyone.OneServer(URL, session="waldur_pyone_admin:s3cret-pass").user.info(-1).NAME == "waldur_pyone_admin")
one.user.passwd(u, "new-pass")
msg = raises(pyone.OneAuthenticationException, pyone.OneServer(URL, session="waldur_pyone_admin:s3cret-pass").vdcpool.info)
check("the old password stops working after passwd", msg is not None)
msg = raises(pyone.OneAuthorizationException, pyone.OneServer(URL, session="waldur_pyone_admin:new-pass").group.allocate, "x")
check("a plain user may not allocate groups", msg and "not authorized" in msg, msg)
one.group.addadmin(g, u)
check("group admins", one.group.info(g).ADMINS.ID == [u])
check("userpool lists the user", "waldur_pyone_admin" in [x.NAME for x in one.userpool.info().USER])
check("grouppool lists the group", "waldur_pyone" in [x.NAME for x in one.grouppool.info().GROUP])
check("pools of templates, images, routers, security groups", (
    len(one.templatepool.info(-2, -1, -1).VMTEMPLATE) == 2 and len(one.imagepool.info(-2, -1, -1).IMAGE) == 2
    and [x.NAME for x in one.vrouterpool.info(-2, -1, -1).VROUTER] == ["waldur_pyone_router"]
    and len(one.secgrouppool.info(-2, -1, -1).SECURITY_GROUP) == 2))

msg = raises(pyone.OneActionException, one.vn.delete, vn)
check("a VNet with leases in use cannot be deleted", msg and "leases in use" in msg, msg)
one.vm.action("terminate-hard", vm)
one.vrouter.delete(vr)
wait_vm(one, vm, 6)
wait_vm(one, vr_vm, 6)
check("terminated VMs are DONE and left out of the default pool listing",
      vm not in [x.ID for x in one.vmpool.info(-2, -1, -1, -1).VM] and one.vm.info(vm).STATE == 6)
one.vn.delete(vn)
one.secgroup.delete(sg)
one.user.delete(u)
one.vdc.delete(v)
one.group.delete(g)
msg = raises(pyone.OneNoExistsException, one.group.info, g)
check("everything is gone", msg is not None and "waldur_pyone" not in [x.NAME for x in one.vdcpool.info().VDC])
msg = raises(pyone.OneException, one.vm.monitoring, 0)
check("an unknown method is an XML-RPC fault", msg and "not defined" in msg, msg)

sys.exit(1 if failed else 0)
