//! backend-openstack
