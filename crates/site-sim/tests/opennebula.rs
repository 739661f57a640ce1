//! The OpenNebula double through its wire protocol: replies, error codes and texts, per-method
//! counters, injected faults (a reply lost after the change), VM states over time, hostile input.

use std::time::Duration;

use http_kit::xmlrpc::{self, Value};
use site_sim::{FaultConfig, FaultRule, OneOptions, OneServer};

fn client() -> reqwest::Client {
    http_kit::install_crypto_provider();
    reqwest::Client::new()
}

async fn start() -> OneServer {
    start_with_step(Duration::from_millis(30)).await
}

async fn start_with_step(vm_step: Duration) -> OneServer {
    OneServer::start(OneOptions {
        vm_step,
        ..Default::default()
    })
    .await
    .expect("double starts")
}

/// One call: Ok(reply array) or Err(transport error text).
async fn call(s: &OneServer, method: &str, params: Vec<Value>) -> Result<Vec<Value>, String> {
    let mut all = vec![Value::from(s.info().credentials.as_str())];
    all.extend(params);
    let body = xmlrpc::call_body(method, &all);
    let resp = client()
        .post(&s.info().url)
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let text = resp.text().await.map_err(|e| e.to_string())?;
    match xmlrpc::parse_response(&text) {
        Ok(Value::Array(a)) => Ok(a),
        other => Err(format!("{other:?}")),
    }
}

fn ok_int(r: &[Value]) -> i64 {
    assert_eq!(r[0], Value::Bool(true), "{r:?}");
    r[1].as_i64().expect("an id")
}

#[tokio::test]
async fn replies_codes_and_counters() {
    let s = start().await;
    let g = ok_int(
        &call(&s, "one.group.allocate", vec!["waldur_a".into()])
            .await
            .expect("the double answers"),
    );
    let dup = call(&s, "one.group.allocate", vec!["waldur_a".into()])
        .await
        .expect("the double answers");
    assert_eq!(dup[0], Value::Bool(false));
    assert_eq!(
        dup[1].as_str(),
        Some(format!("[one.group.allocate] NAME is already taken by GROUP {g}.").as_str())
    );
    assert_eq!(dup[2], Value::Int(0x2000));
    let missing = call(&s, "one.vdc.info", vec![Value::Int(4242)])
        .await
        .expect("the double answers");
    assert_eq!(
        missing[1].as_str(),
        Some("[one.vdc.info] Error getting VDC [4242].")
    );
    assert_eq!(missing[2], Value::Int(0x400));
    let body = xmlrpc::call_body("one.vdcpool.info", &["oneadmin:nope".into()]);
    let text = client()
        .post(&s.info().url)
        .body(body)
        .send()
        .await
        .expect("the double answers")
        .text()
        .await
        .expect("the double answers");
    let denied = xmlrpc::parse_response(&text).expect("the double answers");
    assert_eq!(
        denied.as_array().expect("the double answers")[2],
        Value::Int(0x100)
    );
    let stats = s.stats();
    assert_eq!(stats.count("POST", "/RPC2/one.group.allocate"), 2);
    assert_eq!(stats.count("POST", "/RPC2/one.vdc.info"), 1);
}

#[tokio::test]
async fn a_reply_lost_after_the_change_leaves_the_object() {
    let s = start().await;
    let rule = |before: f64, after: f64| FaultRule {
        route: "/RPC2/one.group.allocate".into(),
        method: None,
        error_rate: 0.0,
        error_status: 503,
        latency_ms: 0,
        drop_rate: before,
        drop_after_rate: after,
    };
    s.set_faults(FaultConfig {
        seed: 1,
        rules: vec![rule(1.0, 0.0)],
    });
    assert!(
        call(&s, "one.group.allocate", vec!["lost_before".into()])
            .await
            .is_err()
    );
    s.set_faults(FaultConfig {
        seed: 1,
        rules: vec![rule(0.0, 1.0)],
    });
    assert!(
        call(&s, "one.group.allocate", vec!["lost_after".into()])
            .await
            .is_err()
    );
    s.set_faults(FaultConfig::default());
    let pool = call(&s, "one.grouppool.info", vec![])
        .await
        .expect("the double answers");
    let doc = pool[1].as_str().expect("the double answers");
    assert!(doc.contains("<NAME>lost_after</NAME>"), "{doc}");
    assert!(!doc.contains("lost_before"), "{doc}");
    let retry = call(&s, "one.group.allocate", vec!["lost_after".into()])
        .await
        .expect("the double answers");
    assert!(
        retry[1]
            .as_str()
            .expect("the double answers")
            .contains("already taken")
    );
}

#[tokio::test]
async fn vms_move_through_states_and_fail_when_told() {
    // Steps long enough that the first read surely sees PENDING on a loaded machine.
    let s = start_with_step(Duration::from_millis(400)).await;
    let extra =
        "CPU=\"1\"\nMEMORY=\"512\"\nDISK=[IMAGE_ID=\"0\", SIZE=\"4096\"]\nNIC=[NETWORK_ID=\"10\"]";
    let vm = ok_int(
        &call(
            &s,
            "one.template.instantiate",
            vec![Value::Int(0), "ok".into(), false.into(), extra.into()],
        )
        .await
        .expect("the double answers"),
    );
    let state = |doc: &str| {
        let e = http_kit::xml::parse(doc).expect("the double answers");
        (
            e.text_of("STATE").expect("the double answers").to_owned(),
            e.text_of("LCM_STATE")
                .expect("the double answers")
                .to_owned(),
        )
    };
    let first = call(&s, "one.vm.info", vec![Value::Int(vm)])
        .await
        .expect("the double answers");
    assert_eq!(
        state(first[1].as_str().expect("the double answers")),
        ("1".into(), "0".into())
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let later = call(&s, "one.vm.info", vec![Value::Int(vm)])
        .await
        .expect("the double answers");
    let doc = later[1].as_str().expect("the double answers");
    assert_eq!(state(doc), ("3".into(), "3".into()));
    assert!(
        doc.contains("192.168.100.2") && doc.contains("4096"),
        "{doc}"
    );
    s.state()
        .store()
        .failures
        .push(site_sim::opennebula::store::VmFailure {
            name_contains: "bad".into(),
            state: "PROLOG_FAILURE".into(),
            count: Some(1),
        });
    let bad = ok_int(
        &call(
            &s,
            "one.template.instantiate",
            vec![Value::Int(0), "bad".into(), false.into(), extra.into()],
        )
        .await
        .expect("the double answers"),
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = call(&s, "one.vm.info", vec![Value::Int(bad)])
        .await
        .expect("the double answers");
    assert_eq!(
        state(r[1].as_str().expect("the double answers")),
        ("3".into(), "39".into())
    );
}

#[tokio::test]
async fn hostile_input_gets_faults_not_panics() {
    let s = start().await;
    let client = client();
    for body in [
        "".to_string(),
        "<methodCall>".into(),
        "<!DOCTYPE x [<!ENTITY a \"b\">]><methodCall/>".into(),
        "<a>".repeat(200),
        xmlrpc::call_body("one.vn.allocate", &["oneadmin:x".into()]),
    ] {
        let r = client
            .post(&s.info().url)
            .body(body)
            .send()
            .await
            .expect("the double answers");
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("the double answers");
        assert!(text.contains("methodResponse"), "{text}");
    }
    // An address range past 255.255.255.255 is refused, not a crash.
    let r = call(
        &s,
        "one.vn.allocate",
        vec![
            "NAME=\"edge\"\nVN_MAD=\"bridge\"\nAR=[TYPE=\"IP4\", IP=\"255.255.255.250\", SIZE=\"100\"]".into(),
            Value::Int(-1),
        ],
    )
    .await
    .expect("the double answers");
    assert_eq!(r[0], Value::Bool(false), "{r:?}");
    // A template in bad syntax is an OpenNebula error, not a crash.
    let r = call(&s, "one.vn.allocate", vec!["NAME=[".into(), Value::Int(-1)])
        .await
        .expect("the double answers");
    assert_eq!(r[0], Value::Bool(false));
    assert_eq!(r[2], Value::Int(0x2000));
}
