//! The client against a hostile or broken server: ids that are not UUIDs never reach a path,
//! bodies are capped while they stream, pagination that does not end is an error, and no error
//! text carries the token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waldur_client::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "s3cr3t-token-value";
const HOSTILE_ID: &str = "../../../__sim/reset-stats";
const OFFERING: &str = "0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c";

fn options(uri: &str) -> ClientOptions {
    let mut options = ClientOptions::new(format!("{uri}/api/"), Auth::Token(Secret::new(TOKEN)));
    options.timeout = Duration::from_secs(20);
    options
}

fn client_for(uri: &str) -> WaldurClient {
    WaldurClient::new(options(uri)).expect("client")
}

fn assert_no_token(err: &WaldurError) {
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
}

#[tokio::test]
async fn an_order_id_that_is_not_a_uuid_never_becomes_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-orders/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"uuid": HOSTILE_ID, "type": "Create", "state": "pending-provider"}
        ])))
        .mount(&server)
        .await;
    // Whatever else is asked is answered, so a request that slipped through would succeed.
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let client = client_for(&server.uri());
    let orders = client
        .list_orders(OFFERING, &[OrderState::PendingProvider], None)
        .await
        .expect("the listing itself is fine");
    let hostile = orders[0].uuid.clone();

    let err = client
        .approve_order_by_provider(&hostile)
        .await
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("refused order id '../../../__sim/reset-stats'")
            && text.contains("not a UUID")
            && text.contains("no request was made"),
        "{text}"
    );
    assert_no_token(&err);

    // Every kind of path id is checked, not just orders.
    let results = vec![
        client.get_order(&hostile, &[]).await.map(|_| ()),
        client.set_order_done(&hostile).await,
        client.set_order_erred(&hostile, "m", "t").await,
        client.reject_order_by_provider(&hostile, None).await,
        client.get_resource(&hostile, &[]).await.map(|_| ()),
        client.resource_team(&hostile, true).await.map(|_| ()),
        client.set_resource_ok(&hostile).await,
        client.get_offering(&hostile, &[]).await.map(|_| ()),
        client.get_plan(&hostile).await.map(|_| ()),
        client.offering_user_begin_creating(&hostile).await,
        client
            .set_offering_user_username(&hostile, "u")
            .await
            .map(|_| ()),
        client.set_user_usages(&hostile, &[]).await,
        client.delete_event_subscription(&hostile).await,
        client
            .register_agent_service("a/../../b", "n", "m")
            .await
            .map(|_| ()),
    ];
    for (i, r) in results.into_iter().enumerate() {
        let err = r.expect_err("a non-UUID path id is refused");
        assert_eq!(err.kind, ErrorKind::Permanent, "call {i}: {err}");
        assert!(err.to_string().contains("not a UUID"), "call {i}: {err}");
    }

    let requests = server.received_requests().await.expect("recorded");
    let paths: Vec<String> = requests.iter().map(|r| r.url.path().to_owned()).collect();
    assert_eq!(
        paths,
        ["/api/marketplace-orders/"],
        "only the listing reached the server"
    );
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_reading() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/version/"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b' '; 300 * 1024]))
        .mount(&server)
        .await;
    let mut opts = options(&server.uri());
    opts.max_response_bytes = 256 * 1024;
    let err = WaldurClient::new(opts)
        .expect("client")
        .version()
        .await
        .expect_err("too large");
    assert_eq!(err.kind, ErrorKind::Decode);
    let text = err.to_string();
    assert!(
        text.contains("GET ")
            && text.contains("/api/version/")
            && text.contains("declares 307200 bytes")
            && text.contains("over the cap of 262144 bytes")
            && text.contains(MAX_RESPONSE_MB_ENV),
        "{text}"
    );
    assert_no_token(&err);

    // Under the cap the same body is read (and fails only as JSON).
    let mut opts = options(&server.uri());
    opts.max_response_bytes = 512 * 1024;
    let err = WaldurClient::new(opts)
        .expect("client")
        .version()
        .await
        .expect_err("not JSON");
    assert!(!err.to_string().contains("cap"), "{err}");
}

/// A server that answers every request with a chunked body that never ends, counting the bytes
/// it managed to send.
async fn endless_server() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let payload = vec![b'['; 64 * 1024];
                let chunk = [
                    format!("{:x}\r\n", payload.len()).into_bytes(),
                    payload,
                    b"\r\n".to_vec(),
                ]
                .concat();
                loop {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (format!("http://{addr}"), sent)
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap_while_streaming() {
    let (uri, sent) = endless_server().await;
    let mut opts = options(&uri);
    opts.max_response_bytes = 1024 * 1024;
    let client = WaldurClient::new(opts).expect("client");
    let started = Instant::now();
    let err = client
        .list_orders(OFFERING, &[OrderState::Executing], None)
        .await
        .expect_err("endless body");
    let elapsed = started.elapsed();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/api/marketplace-orders/")
            && text.contains("over the cap of 1 MiB")
            && text.contains("reading stopped"),
        "{text}"
    );
    assert_no_token(&err);
    // Stopped at the cap, not at the 20 s timeout; what the server got out before the client
    // hung up is the cap plus socket buffers, not an unbounded stream.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let streamed = sent.load(Ordering::Relaxed);
    assert!(
        streamed < 48 * 1024 * 1024,
        "the server streamed {streamed} bytes"
    );
    assert!(streamed >= 1024 * 1024, "the cap was reached: {streamed}");
}

/// A listing whose every page links to `next(page)`, one item per page.
async fn paginating_server(next: fn(u32) -> u32) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/marketplace-orders/"))
        .respond_with(move |req: &Request| {
            let page: u32 = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(1);
            let link = format!(
                "<http://internal.example/api/marketplace-orders/?page={}>; rel=\"next\"",
                next(page)
            );
            ResponseTemplate::new(200)
                .insert_header("Link", link.as_str())
                .set_body_json(json!([
                    {"uuid": format!("{page:032x}"), "type": "Create", "state": "executing"}
                ]))
        })
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn pagination_that_never_ends_is_an_error_after_the_cap() {
    let server = paginating_server(|p| p + 1).await;
    let mut opts = options(&server.uri());
    opts.max_pages = 5;
    let err = WaldurClient::new(opts)
        .expect("client")
        .list_orders(OFFERING, &[OrderState::Executing], None)
        .await
        .expect_err("endless pagination");
    assert_eq!(err.kind, ErrorKind::Decode);
    let text = err.to_string();
    assert!(
        text.contains("GET /api/marketplace-orders/")
            && text.contains("past 5 pages (5 items read)")
            && text.contains(MAX_PAGES_ENV),
        "{text}"
    );
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 5, "one request per allowed page");

    // The default cap is the documented one.
    assert_eq!(
        ClientOptions::new("http://x/", Auth::Token(Secret::new("t"))).max_pages,
        10_000
    );
}

#[tokio::test]
async fn a_next_link_that_does_not_advance_is_an_error_not_a_truncation() {
    // Page 1 → 2, then page 2 says next is 2 again.
    let server = paginating_server(|_| 2).await;
    let err = client_for(&server.uri())
        .list_orders(OFFERING, &[OrderState::Executing], None)
        .await
        .expect_err("repeated next");
    assert_eq!(err.kind, ErrorKind::Decode);
    assert!(
        err.to_string()
            .contains("page 2 links to page 2 as next; refusing to loop"),
        "{err}"
    );
    assert_eq!(server.received_requests().await.expect("recorded").len(), 2);
}

#[test]
fn limits_come_from_the_environment_when_set() {
    let mut opts = ClientOptions::new("http://x/", Auth::Token(Secret::new("t")));
    assert_eq!(opts.max_response_bytes, 64 * 1024 * 1024);
    opts.apply_env_limits(|_| None).expect("unset is fine");
    assert_eq!(opts.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
    opts.apply_env_limits(|name| match name {
        MAX_RESPONSE_MB_ENV => Some("8".into()),
        MAX_PAGES_ENV => Some(" 50 ".into()),
        _ => None,
    })
    .expect("numbers");
    assert_eq!(opts.max_response_bytes, 8 * 1024 * 1024);
    assert_eq!(opts.max_pages, 50);
    for bad in ["0", "-1", "lots", "1.5"] {
        let err = opts
            .apply_env_limits(|name| (name == MAX_RESPONSE_MB_ENV).then(|| bad.to_owned()))
            .expect_err(bad);
        assert!(
            err.contains(MAX_RESPONSE_MB_ENV) && err.contains(bad),
            "{err}"
        );
    }
}
