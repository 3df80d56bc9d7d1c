//! Browsers as the server-rendered pages see them: [`Browser`] holds a session cookie and the
//! CSRF token its forms carry; [`SignInForm`] goes through the real sign-in form (double-submit
//! cookie, password check, limits), optionally as a client behind a proxy or with a device cookie.

use inbox_core::model::{Agent, Role};
use reqwest::StatusCode;
use reqwest::header::COOKIE;

use crate::TestApp;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("cannot build the HTTP client: {e}"))
}

/// A signed-in browser: the session cookie and the CSRF token its forms carry.
#[derive(Debug)]
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub client: reqwest::Client,
    /// `inbox_session=…`, for the `Cookie` header.
    pub cookie: String,
    pub csrf: String,
}

impl<'a> Browser<'a> {
    /// A session for the admin, or for a new agent `agent@example.com`.
    pub async fn sign_in(app: &'a TestApp, role: Role) -> Browser<'a> {
        let agent = match role {
            Role::Admin => app.admin.clone(),
            Role::Agent => app.create_agent("agent@example.com", "Agent", role).await.0,
        };
        Self::as_agent(app, &agent).await
    }

    /// A session for `agent`, made in the store (no password needed).
    pub async fn as_agent(app: &'a TestApp, agent: &Agent) -> Browser<'a> {
        let (token, session) = app
            .store
            .create_session(agent.id, chrono::Duration::hours(1))
            .await
            .unwrap_or_else(|e| panic!("cannot create a session: {e}"));
        Browser {
            app,
            client: no_redirects(),
            cookie: format!("inbox_session={token}"),
            csrf: session.csrf_token,
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(self.app.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// A form post with the session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut fields = fields.to_vec();
        fields.push(("_csrf", &self.csrf));
        self.client
            .post(self.app.url(path))
            .header(COOKIE, &self.cookie)
            .form(&fields)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }
}

/// One submission of the sign-in form, as a browser makes it: it fetches the form (for the
/// double-submit cookie), then posts the credentials.
#[derive(Debug, Clone, Default)]
pub struct SignInForm {
    pub email: String,
    pub password: String,
    pub next: String,
    /// `X-Forwarded-For` to send (believed only from a trusted proxy).
    pub forwarded_for: Option<String>,
    /// More cookies to send, e.g. `inbox_device=…`.
    pub cookies: Vec<String>,
}

impl SignInForm {
    pub fn new(email: &str, password: &str) -> Self {
        SignInForm {
            email: email.to_owned(),
            password: password.to_owned(),
            next: "/inbox".to_owned(),
            ..SignInForm::default()
        }
    }

    pub fn from_client(mut self, address: &str) -> Self {
        self.forwarded_for = Some(address.to_owned());
        self
    }

    pub fn with_cookie(mut self, cookie: &str) -> Self {
        self.cookies.push(cookie.to_owned());
        self
    }

    pub fn next(mut self, next: &str) -> Self {
        self.next = next.to_owned();
        self
    }

    /// Submits the form; the response is not followed.
    pub async fn submit(&self, app: &TestApp) -> reqwest::Response {
        let client = no_redirects();
        let page = client
            .get(app.url("/login"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /login failed: {e}"));
        let login_cookie = set_cookie(&page, "inbox_login")
            .unwrap_or_else(|| panic!("GET /login set no inbox_login cookie"));
        let token = login_cookie
            .split_once('=')
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default();
        let mut cookies = vec![login_cookie];
        cookies.extend(self.cookies.iter().cloned());
        let mut request = client
            .post(app.url("/login"))
            .header(COOKIE, cookies.join("; "))
            .form(&[
                ("email", self.email.as_str()),
                ("password", self.password.as_str()),
                ("_csrf", token.as_str()),
                ("next", self.next.as_str()),
            ]);
        if let Some(address) = &self.forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /login failed: {e}"))
    }
}

/// `name=value` of a cookie the response sets, without its attributes.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.split_once('=').is_some_and(|(k, _)| k == name))
        .map(str::to_owned)
}
