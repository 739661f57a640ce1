//! placeholder
pub async fn report(_ctx: &crate::OfferingContext) -> crate::CycleReport {
    crate::CycleReport::default()
}
