//! Token sources: how a [`crate::RestClient`] authenticates its requests.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::Secret;
use crate::client::{Request, RestClient};
use crate::error::{HttpError, HttpResult};

/// How a token travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>` (OAuth2, Kubernetes, Rancher).
    Bearer,
    /// `Authorization: Token <token>` (Waldur, Django REST framework).
    Token,
    /// The token alone in a header of its own (`X-Auth-Token` for Keystone).
    Header(&'static str),
}

impl AuthScheme {
    pub(crate) fn apply(
        &self,
        builder: reqwest::RequestBuilder,
        token: &Secret,
    ) -> reqwest::RequestBuilder {
        match self {
            AuthScheme::Bearer => builder.bearer_auth(token.expose()),
            AuthScheme::Token => builder.header(
                reqwest::header::AUTHORIZATION,
                format!("Token {}", token.expose()),
            ),
            AuthScheme::Header(name) => builder.header(*name, token.expose()),
        }
    }
}

/// Where a request's token comes from. `Debug` never shows a token or a password.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token to send now. `refused` is the token the server just answered 401 to: return
    /// another one if the source can get one.
    async fn token(&self, refused: Option<&Secret>) -> HttpResult<Secret>;

    fn scheme(&self) -> AuthScheme;

    /// Whether a 401 is worth one more try with a fresh token.
    fn renews_on_401(&self) -> bool {
        true
    }
}

/// A fixed token from the configuration.
pub struct StaticToken {
    token: Secret,
    scheme: AuthScheme,
}

impl StaticToken {
    pub fn new(token: Secret, scheme: AuthScheme) -> Self {
        StaticToken { token, scheme }
    }
    pub fn bearer(token: Secret) -> Self {
        StaticToken::new(token, AuthScheme::Bearer)
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticToken({:?}, ***)", self.scheme)
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self, _refused: Option<&Secret>) -> HttpResult<Secret> {
        Ok(self.token.clone())
    }
    fn scheme(&self) -> AuthScheme {
        self.scheme.clone()
    }
    fn renews_on_401(&self) -> bool {
        false
    }
}

/// A token read from a file and read again when the file changes (a Kubernetes service-account
/// token is rotated in place) or when the server refused it.
pub struct FileToken {
    path: PathBuf,
    scheme: AuthScheme,
    context: String,
    cached: Mutex<Option<(Option<SystemTime>, Secret)>>,
}

impl FileToken {
    pub fn new(context: impl Into<String>, path: impl Into<PathBuf>, scheme: AuthScheme) -> Self {
        FileToken {
            path: path.into(),
            scheme,
            context: context.into(),
            cached: Mutex::new(None),
        }
    }
}

impl fmt::Debug for FileToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileToken({}, ***)", self.path.display())
    }
}

#[async_trait]
impl TokenSource for FileToken {
    async fn token(&self, refused: Option<&Secret>) -> HttpResult<Secret> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut cached = self.cached.lock().await;
        if let Some((seen, token)) = cached.as_ref()
            && *seen == modified
            && modified.is_some()
            && refused != Some(token)
        {
            return Ok(token.clone());
        }
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            HttpError::setup(
                self.context.clone(),
                format!("token file '{}' cannot be read: {e}", self.path.display()),
            )
        })?;
        let token = Secret::new(text.trim());
        if token.is_empty() {
            return Err(HttpError::setup(
                self.context.clone(),
                format!("token file '{}' is empty", self.path.display()),
            ));
        }
        *cached = Some((modified, token.clone()));
        Ok(token)
    }
    fn scheme(&self) -> AuthScheme {
        self.scheme.clone()
    }
}

/// An OAuth2 / OIDC grant at a token endpoint.
#[derive(Clone)]
pub enum OAuth2Grant {
    /// `client_credentials` (the Waldur client's OIDC login, Keycloak service accounts).
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
    },
    /// `refresh_token` (e.g. an OpenShift OAuth refresh token); a rotated refresh token is kept.
    RefreshToken {
        client_id: String,
        client_secret: Option<Secret>,
        refresh_token: Secret,
    },
    /// `password` (Keycloak admin-cli); a refresh token in the answer is used next time.
    Password {
        client_id: String,
        client_secret: Option<Secret>,
        username: String,
        password: Secret,
        scope: Option<String>,
    },
}

impl OAuth2Grant {
    fn principal(&self) -> String {
        match self {
            OAuth2Grant::ClientCredentials { client_id, .. }
            | OAuth2Grant::RefreshToken { client_id, .. } => format!("client '{client_id}'"),
            OAuth2Grant::Password {
                client_id,
                username,
                ..
            } => format!("user '{username}' (client '{client_id}')"),
        }
    }

    fn form(&self, refresh: Option<&Secret>) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: &str| form.push((k.to_owned(), v.to_owned()));
        let (client_id, client_secret) = match self {
            OAuth2Grant::ClientCredentials {
                client_id,
                client_secret,
                scope,
            } => {
                push("grant_type", "client_credentials");
                if let Some(scope) = scope {
                    push("scope", scope);
                }
                (client_id, Some(client_secret))
            }
            OAuth2Grant::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => {
                push("grant_type", "refresh_token");
                push("refresh_token", refresh.unwrap_or(refresh_token).expose());
                (client_id, client_secret.as_ref())
            }
            OAuth2Grant::Password {
                client_id,
                client_secret,
                username,
                password,
                scope,
            } => {
                if let Some(refresh) = refresh {
                    push("grant_type", "refresh_token");
                    push("refresh_token", refresh.expose());
                } else {
                    push("grant_type", "password");
                    push("username", username);
                    push("password", password.expose());
                    if let Some(scope) = scope {
                        push("scope", scope);
                    }
                }
                (client_id, client_secret.as_ref())
            }
        };
        push("client_id", client_id);
        if let Some(secret) = client_secret {
            push("client_secret", secret.expose());
        }
        form
    }
}

struct OAuthState {
    access: Option<(Secret, Instant)>,
    refresh: Option<Secret>,
}

/// Tokens from an OAuth2 token endpoint, cached until shortly before they expire and fetched
/// anew after a 401. Token answers are never put into an error.
pub struct OAuth2Token {
    token_url: String,
    grant: OAuth2Grant,
    http: RestClient,
    state: Mutex<OAuthState>,
}

/// Tokens are renewed this long before they expire.
const OAUTH_MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the endpoint gives no `expires_in`.
const OAUTH_DEFAULT_TTL: Duration = Duration::from_secs(300);

impl OAuth2Token {
    /// `http` sends the token requests (its TLS, proxy and timeouts apply; its base URL does not).
    pub fn new(token_url: impl Into<String>, grant: OAuth2Grant, http: RestClient) -> Self {
        OAuth2Token {
            token_url: token_url.into(),
            grant,
            http,
            state: Mutex::new(OAuthState {
                access: None,
                refresh: None,
            }),
        }
    }

    /// Drop the cached access token (the API refused it): the next request fetches a new one.
    pub async fn forget(&self) {
        self.state.lock().await.access = None;
    }

    async fn fetch(
        &self,
        refresh: Option<&Secret>,
    ) -> HttpResult<(Secret, Instant, Option<Secret>)> {
        let request = Request::post(self.token_url.clone())
            .form(self.grant.form(refresh))
            .without_auth()
            // Asking for a token changes nothing: safe to repeat after a transient failure.
            .idempotent(true)
            .accept(&[
                reqwest::StatusCode::BAD_REQUEST,
                reqwest::StatusCode::UNAUTHORIZED,
                reqwest::StatusCode::FORBIDDEN,
            ]);
        let answer = self.http.send(request).await?;
        if !answer.status.is_success() {
            return Err(self.http.auth_rejected(
                &self.grant.principal(),
                answer.status.as_u16(),
                "the OAuth2/OIDC client settings",
            ));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<f64>,
            #[serde(default)]
            refresh_token: Option<String>,
        }
        // The body holds the token: the decode error must not quote it.
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
            answer.decode_error(format!("token answer withheld ({})", e.classify_name()))
        })?;
        let ttl = parsed
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(OAUTH_DEFAULT_TTL);
        Ok((
            Secret::new(parsed.access_token),
            Instant::now() + ttl.saturating_sub(OAUTH_MARGIN),
            parsed.refresh_token.map(Secret::new),
        ))
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "no access_token",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

impl fmt::Debug for OAuth2Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OAuth2Token({}, {}, ***)",
            self.token_url,
            self.grant.principal()
        )
    }
}

#[async_trait]
impl TokenSource for OAuth2Token {
    async fn token(&self, refused: Option<&Secret>) -> HttpResult<Secret> {
        let mut state = self.state.lock().await;
        if let Some((token, refresh_at)) = state.access.as_ref()
            && Instant::now() < *refresh_at
            && refused != Some(token)
        {
            return Ok(token.clone());
        }
        let refresh = state.refresh.clone();
        let fetched = match refresh {
            Some(r) => match self.fetch(Some(&r)).await {
                Ok(f) => Ok(f),
                // A refresh token may have expired: start over with the grant itself.
                Err(e) if !e.is_transient() => self.fetch(None).await,
                Err(e) => Err(e),
            },
            None => self.fetch(None).await,
        };
        let (token, refresh_at, new_refresh) = fetched?;
        state.access = Some((token.clone(), refresh_at));
        if new_refresh.is_some() {
            state.refresh = new_refresh;
        }
        Ok(token)
    }
    fn scheme(&self) -> AuthScheme {
        AuthScheme::Bearer
    }
}

/// A token an API issued at login, with its lifetime.
#[derive(Clone)]
pub struct Issued<I> {
    pub token: Secret,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// What else the login answered (Keystone: the token body with the catalog).
    pub info: I,
}

/// An API's own login (Keystone's `POST /v3/auth/tokens`, Rancher's `/v3-public/...`).
#[async_trait]
pub trait Login: Send + Sync {
    type Info: Clone + Send + Sync + 'static;
    /// Log in once with `http` (unauthenticated, same TLS/proxy/timeouts as the API client).
    async fn login(&self, http: &RestClient) -> HttpResult<Issued<Self::Info>>;
}

/// Whether a token is still good for a while: renewed when less than a quarter of its lifetime
/// (at most 5 minutes) is left.
pub fn still_fresh(issued_at: Timestamp, expires_at: Timestamp, now: Timestamp) -> bool {
    let lifetime = expires_at.duration_since(issued_at).as_secs().max(0);
    let margin = (lifetime / 4).min(300);
    expires_at.duration_since(now).as_secs() > margin
}

/// "Log in, keep the token, log in again before it expires or after a 401".
pub struct LoginToken<L: Login> {
    login: L,
    http: RestClient,
    scheme: AuthScheme,
    cached: Mutex<Option<Issued<L::Info>>>,
}

impl<L: Login> LoginToken<L> {
    pub fn new(login: L, http: RestClient, scheme: AuthScheme) -> Self {
        LoginToken {
            login,
            http,
            scheme,
            cached: Mutex::new(None),
        }
    }

    /// The current login (logging in when needed). `refused` = a token the server just refused.
    pub async fn issued(&self, refused: Option<&Secret>) -> HttpResult<Issued<L::Info>> {
        let mut guard = self.cached.lock().await;
        if let Some(cached) = guard.as_ref() {
            let was_refused = refused.is_some_and(|s| s == &cached.token);
            if !was_refused && still_fresh(cached.issued_at, cached.expires_at, Timestamp::now()) {
                return Ok(cached.clone());
            }
        }
        let fresh = self.login.login(&self.http).await?;
        tracing::debug!(target = %self.http.target(), expires_at = %fresh.expires_at, "logged in");
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drop the cached login (credential rotation, a token found revoked).
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}

impl<L: Login> fmt::Debug for LoginToken<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoginToken({}, ***)", self.http.target())
    }
}

#[async_trait]
impl<L: Login> TokenSource for LoginToken<L> {
    async fn token(&self, refused: Option<&Secret>) -> HttpResult<Secret> {
        Ok(self.issued(refused).await?.token)
    }
    fn scheme(&self) -> AuthScheme {
        self.scheme.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::HttpSettings;
    use std::sync::Arc;
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[test]
    fn tokens_are_renewed_before_expiry() {
        let ts = |s: &str| s.parse::<Timestamp>().expect("ts");
        let (issued, expires) = (ts("2025-01-01T00:00:00Z"), ts("2025-01-02T00:00:00Z"));
        assert!(still_fresh(issued, expires, ts("2025-01-01T23:50:00Z")));
        assert!(!still_fresh(issued, expires, ts("2025-01-01T23:56:00Z")));
        let short = ts("2025-01-01T00:04:00Z");
        assert!(still_fresh(issued, short, ts("2025-01-01T00:02:00Z")));
        assert!(!still_fresh(issued, short, ts("2025-01-01T00:03:30Z")));
    }

    fn http(uri: &str) -> RestClient {
        let mut s = HttpSettings::new("test", "token-test", url::Url::parse(uri).expect("url"));
        s.retry.base_delay = Duration::from_millis(5);
        RestClient::new(&s).expect("client")
    }

    #[tokio::test]
    async fn client_credentials_are_cached_and_renewed_after_a_401() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("grant_type=client_credentials"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(
                    serde_json::json!({"access_token": "acc-1", "expires_in": 3600}),
                ),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api"))
            .and(header("authorization", "Bearer acc-1"))
            .respond_with(ResponseTemplate::new(401))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let source = Arc::new(OAuth2Token::new(
            format!("{}/token", server.uri()),
            OAuth2Grant::ClientCredentials {
                client_id: "agent".into(),
                client_secret: Secret::new("cs-secret"),
                scope: None,
            },
            http(&server.uri()),
        ));
        let api = http(&server.uri()).with_auth(source.clone());
        api.send(Request::get("/api")).await.expect("after renewal");
        api.send(Request::get("/api")).await.expect("cached");
        let token_calls = server
            .received_requests()
            .await
            .expect("recorded")
            .iter()
            .filter(|r| r.url.path() == "/token")
            .count();
        assert_eq!(token_calls, 2, "first login + one after the 401");
        assert!(!format!("{source:?}").contains("cs-secret"));
    }

    #[tokio::test]
    async fn a_refused_grant_is_a_config_error_without_the_secret() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(serde_json::json!({"error": "invalid_client"})),
            )
            .mount(&server)
            .await;
        let source = OAuth2Token::new(
            format!("{}/token", server.uri()),
            OAuth2Grant::Password {
                client_id: "admin-cli".into(),
                client_secret: None,
                username: "admin".into(),
                password: Secret::new("pw-hidden"),
                scope: None,
            },
            http(&server.uri()),
        );
        let err = source.token(None).await.expect_err("refused");
        assert!(err.is_config(), "{err}");
        assert!(err.to_string().contains("admin") && !err.to_string().contains("pw-hidden"));
    }

    #[tokio::test]
    async fn file_tokens_are_read_again_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("kit-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "first\n").expect("write");
        let source = FileToken::new("test", &file, AuthScheme::Bearer);
        assert_eq!(source.token(None).await.expect("read").expose(), "first");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "second").expect("rewrite");
        // Same mtime granularity on some filesystems: a refusal forces the re-read anyway.
        let first = Secret::new("first");
        assert_eq!(
            source.token(Some(&first)).await.expect("reread").expose(),
            "second"
        );
        std::fs::remove_file(&file).expect("remove");
        assert!(
            source
                .token(Some(&Secret::new("second")))
                .await
                .expect_err("gone")
                .is_config()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
