//! Data integrity of the order path against the simulator: one site object per resource, however
//! many orders of one project arrive in a cycle, and no Terminate reported done before the site
//! lost the resource.

mod sim_common;

use std::collections::BTreeSet;

use agent_core::order_process;
use sim_common::*;

/// Every Waldur resource of the demo offering with its backend id.
fn waldur_backend_ids(w: &World) -> Vec<(String, String)> {
    w.sim
        .state()
        .resources
        .values()
        .filter(|r| r.state != "Terminated")
        .map(|r| (r.uuid.simple().to_string(), r.backend_id.clone()))
        .collect()
}

#[tokio::test]
async fn sixty_creates_in_one_project_get_sixty_distinct_site_objects() {
    let w = world().await;
    let mut orders = Vec::new();
    for i in 0..60 {
        orders.push(w.create_order(&format!("alloc-{i}"), 1).await);
    }
    assert_clean(&order_process(&w.ctx).await);
    for o in &orders {
        assert_eq!(w.order_state(o).await, "done", "order {o}");
    }
    let ids: Vec<String> = waldur_backend_ids(&w)
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 60);
    assert_eq!(
        distinct.len(),
        60,
        "two resources share a backend id: {ids:?}"
    );
    let on_site: BTreeSet<String> = w.site.resource_ids().into_iter().collect();
    assert_eq!(on_site.len(), 60);
    for id in &ids {
        assert!(
            on_site.contains(id),
            "{id} is recorded in Waldur but not on the site"
        );
    }
    assert_eq!(
        w.site.count_calls("create"),
        60,
        "each site object created once"
    );
}

#[tokio::test]
async fn an_id_another_resource_holds_in_waldur_is_never_given_again() {
    let w = world().await;
    // An earlier agent recorded `demo-project` for this resource and died before the site
    // create; its order has since been erred by hand.
    let earlier = w.create_order("earlier", 1).await;
    let earlier_resource = w.resource_uuid_of(&earlier).await;
    w.set_order_state(&earlier, "erred");
    w.set_resource_state(&earlier_resource, "Erred");
    w.set_resource_backend_id(&earlier_resource, "demo-project");

    let order = w.create_order("later", 1).await;
    assert_clean(&order_process(&w.ctx).await);
    assert_eq!(w.order_state(&order).await, "done");
    let id = w.resource_of(&order).await["backend_id"]
        .as_str()
        .expect("backend id")
        .to_owned();
    assert_ne!(
        id, "demo-project",
        "the id of another live resource was reused"
    );
    assert_eq!(id, "demo-project-0");
}

#[tokio::test]
async fn an_id_taken_on_the_site_moves_every_colliding_order_on() {
    let w = world().await;
    // Accounts the site already has for other reasons.
    for taken in ["demo-project", "demo-project-0", "demo-project-2"] {
        w.site
            .insert_resource(taken, backend_api::testkit::MemoryResource::default());
    }
    let mut orders = Vec::new();
    for i in 0..5 {
        orders.push(w.create_order(&format!("alloc-{i}"), 1).await);
    }
    assert_clean(&order_process(&w.ctx).await);
    let mut ids: Vec<String> = waldur_backend_ids(&w)
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "demo-project-1",
            "demo-project-3",
            "demo-project-4",
            "demo-project-5",
            "demo-project-6"
        ]
    );
    assert_eq!(w.site.count_calls("create"), 5);
}

#[tokio::test]
async fn a_batch_of_terminates_removes_every_site_object_before_done() {
    let w = world().await;
    let mut resources = Vec::new();
    for i in 0..16 {
        resources.push(w.provisioned(&format!("alloc-{i}"), 1).await);
    }
    assert_eq!(w.site.resource_ids().len(), 16);
    let mut orders = Vec::new();
    for (resource, _) in &resources {
        orders.push(w.consumer.terminate(resource).await.expect("terminate"));
    }
    assert_clean(&order_process(&w.ctx).await);
    for o in &orders {
        assert_eq!(w.order_state(o).await, "done");
    }
    assert!(
        w.site.resource_ids().is_empty(),
        "{:?}",
        w.site.resource_ids()
    );
}

/// A project of the demo customer with the given slug; returns its uuid.
fn add_project(w: &World, slug: &str) -> String {
    let demo_project = uuid(&w.sim.demo().project_uuid);
    let id = uuid::Uuid::new_v4();
    w.sim
        .mutate(|s| {
            let mut project = s.projects.get(&demo_project).expect("demo project").clone();
            project.uuid = id;
            project.slug = slug.to_owned();
            project.name = format!("Project {}", slug.escape_debug());
            s.projects.insert(id, project);
            Ok(())
        })
        .expect("project added");
    id.simple().to_string()
}

#[tokio::test]
async fn one_hostile_project_slug_errs_only_its_own_order() {
    let w = world().await;
    let demo = w.sim.demo().clone();
    let fine = add_project(&w, "fine-project");
    // U+202E RIGHT-TO-LEFT OVERRIDE: invisible, and not a control character.
    let hostile = add_project(&w, "evil\u{202e}gnp");
    let mut orders = Vec::new();
    for project in [demo.project_uuid.clone(), hostile, fine] {
        orders.push(
            w.consumer
                .create_order(
                    &demo.offering_uuid,
                    &project,
                    Some(&demo.plan_uuid),
                    limits(&[("cpu", 1)]),
                    "alloc",
                )
                .await
                .expect("order placed"),
        );
    }
    let report = order_process(&w.ctx).await;
    assert_eq!(report.failed, 1, "{:?}", report.errors);
    assert_eq!(w.order_state(&orders[0]).await, "done");
    assert_eq!(w.order_state(&orders[2]).await, "done");
    assert_eq!(w.order_state(&orders[1]).await, "erred");
    let message = w.order_error(&orders[1]);
    assert!(
        message.contains("U+202E"),
        "the message names the character: {message}"
    );
    let mut ids = w.site.resource_ids();
    ids.sort();
    assert_eq!(ids, vec!["demo-project", "fine-project"]);
}
