//! placeholder
pub async fn membership_sync(_ctx: &crate::OfferingContext) -> crate::CycleReport {
    crate::CycleReport::default()
}
pub async fn process_project_user_sync() {}
pub async fn process_resource_by_uuid() {}
pub async fn process_user_role_changed() {}
pub async fn process_username_set() {}
