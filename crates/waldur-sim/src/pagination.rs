//! `LinkHeaderPagination` (§1.3): bare JSON arrays, `page`/`page_size` (default 10, max 300),
//! `X-Result-Count` and RFC 5988 `Link` headers with absolute URLs.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::query::Params;

pub const DEFAULT_PAGE_SIZE: usize = 10;
pub const MAX_PAGE_SIZE: usize = 300;

/// Keeps only the `field=` keys of an object (sparse fieldsets); no `field` → unchanged.
pub fn select_fields(value: Value, params: &Params) -> Value {
    let fields = params.all("field");
    if fields.is_empty() {
        return value;
    }
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.iter().any(|f| f == k))
                .collect(),
        ),
        other => other,
    }
}

fn url_with_page(request_url: &url::Url, page: Option<usize>) -> String {
    let mut url = request_url.clone();
    let kept: Vec<(String, String)> = request_url
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        if let Some(p) = page {
            q.append_pair("page", &p.to_string());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url.to_string()
}

/// Pages `items` and renders the list response (headers only for HEAD).
pub fn paginate(
    items: Vec<Value>,
    params: &Params,
    request_url: &url::Url,
    head: bool,
) -> ApiResult<Response> {
    let total = items.len();
    let page_size = params
        .get("page_size")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|v| *v > 0)
        .map(|v| v.min(MAX_PAGE_SIZE))
        .unwrap_or(DEFAULT_PAGE_SIZE);
    let pages = total.div_ceil(page_size).max(1);
    let page = match params.get("page") {
        None => 1,
        Some("last") => pages,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if n >= 1 && n <= pages => n,
            _ => return Err(ApiError::detail(StatusCode::NOT_FOUND, "Invalid page.")),
        },
    };
    let start = (page - 1) * page_size;
    let page_items: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(page_size)
        .map(|v| select_fields(v, params))
        .collect();

    let mut links = vec![format!(
        "<{}>; rel=\"first\"",
        url_with_page(request_url, None)
    )];
    if page > 1 {
        let prev = if page == 2 { None } else { Some(page - 1) };
        links.push(format!(
            "<{}>; rel=\"prev\"",
            url_with_page(request_url, prev)
        ));
    }
    if page < pages {
        links.push(format!(
            "<{}>; rel=\"next\"",
            url_with_page(request_url, Some(page + 1))
        ));
    }
    let last = if pages == 1 { None } else { Some(pages) };
    links.push(format!(
        "<{}>; rel=\"last\"",
        url_with_page(request_url, last)
    ));

    let mut resp = if head {
        StatusCode::OK.into_response()
    } else {
        axum::Json(Value::Array(page_items)).into_response()
    };
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        headers.insert("x-result-count", v);
    }
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        headers.insert("link", v);
    }
    Ok(resp)
}
