//! The door: like a notebook server, the UI is opened with a one-time token that becomes a session cookie. A request
//! with neither the cookie nor the token gets a 401, a wrong or spent token a 403, and nothing else is served.

use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, StatusCode, header};

/// The token and the session secret of one UI instance.
#[derive(Debug)]
pub struct Gate {
    /// The token of the printed URL, until it is used.
    token: Mutex<Option<String>>,
    /// The cookie's value: a secret of its own, so that the token (in a terminal, a browser history) opens nothing
    /// once it has been used.
    secret: String,
    /// The cookie's name (carries the port: cookies are shared between the ports of one host).
    cookie: String,
}

/// What the gate decides about one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The session cookie is there: serve.
    Pass,
    /// The right token: set the cookie and redirect to the same place without the token.
    Admit {
        /// The `Set-Cookie` value.
        set_cookie: String,
        /// Where to go.
        location: String,
    },
    /// Neither cookie nor token.
    Unauthorized,
    /// A token that is not (or no longer) this server's.
    Forbidden,
}

/// A random 32-byte secret, hex.
fn secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Gate {
    /// A gate with a fresh token and secret; `port` names the cookie.
    pub fn new(port: u16) -> Gate {
        Gate {
            token: Mutex::new(Some(secret())),
            secret: secret(),
            cookie: format!("cmi_ui_{port}"),
        }
    }

    /// The token for the printed URL (`None` once it has been used).
    pub fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Decides about a request from its path, query and `Cookie` headers.
    pub fn check<'a>(&self, path: &str, query: Option<&str>, cookies: impl Iterator<Item = &'a str>) -> Verdict {
        let has_cookie = cookies
            .flat_map(|h| h.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == self.cookie && same(v, &self.secret));
        let mut rest = vec![];
        let mut given = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.strip_prefix("token=") {
                Some(t) => given = Some(t.to_string()),
                None => rest.push(pair),
            }
        }
        let location = if rest.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        match given {
            // A browser that is in already and follows the link again: just drop the token from the address.
            Some(_) if has_cookie => Verdict::Admit {
                set_cookie: self.set_cookie(),
                location,
            },
            Some(t) => {
                let mut token = self.token.lock().unwrap_or_else(|p| p.into_inner());
                if token.as_deref().is_some_and(|k| same(k, &t)) {
                    *token = None;
                    Verdict::Admit {
                        set_cookie: self.set_cookie(),
                        location,
                    }
                } else {
                    Verdict::Forbidden
                }
            }
            None if has_cookie => Verdict::Pass,
            None => Verdict::Unauthorized,
        }
    }

    fn set_cookie(&self) -> String {
        format!("{}={}; Path=/ui; HttpOnly; SameSite=Strict", self.cookie, self.secret)
    }
}

/// The middleware: every UI route goes through it.
pub(crate) async fn middleware(State(gate): State<std::sync::Arc<Gate>>, req: Request, next: Next) -> Response {
    let cookies = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    match gate.check(req.uri().path(), req.uri().query(), cookies) {
        Verdict::Pass => next.run(req).await,
        Verdict::Admit { set_cookie, location } => {
            let mut r = (StatusCode::SEE_OTHER, ()).into_response();
            if let (Ok(c), Ok(l)) = (HeaderValue::from_str(&set_cookie), HeaderValue::from_str(&location)) {
                r.headers_mut().insert(header::SET_COOKIE, c);
                r.headers_mut().insert(header::LOCATION, l);
            }
            r
        }
        Verdict::Unauthorized => refusal(
            StatusCode::UNAUTHORIZED,
            "This page needs the link that `cmi serve` (or `cmi ui`) printed: open http://127.0.0.1:PORT/ui/?token=… from its output.",
        ),
        Verdict::Forbidden => refusal(
            StatusCode::FORBIDDEN,
            "This link's token is not valid here: it was used already (the browser that used it is signed in) or is from an earlier start. Restart `cmi serve` or `cmi ui` for a new link.",
        ),
    }
}

fn refusal(status: StatusCode, message: &str) -> Response {
    let mut r = Response::new(Body::from(format!("{message}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::{Gate, Verdict};

    fn cookie_of(v: &Verdict) -> String {
        match v {
            Verdict::Admit { set_cookie, .. } => set_cookie.split(';').next().unwrap_or_default().to_string(),
            other => panic!("not admitted: {other:?}"),
        }
    }

    #[test]
    fn the_token_opens_once_and_the_cookie_opens_after() {
        let g = Gate::new(8777);
        let token = g.token().expect("a token");
        assert_eq!(g.check("/ui/", None, std::iter::empty()), Verdict::Unauthorized);
        assert_eq!(
            g.check("/ui/", Some("token=wrong"), std::iter::empty()),
            Verdict::Forbidden
        );
        let admitted = g.check("/ui/", Some(&format!("lang=ja&token={token}")), std::iter::empty());
        match &admitted {
            Verdict::Admit { set_cookie, location } => {
                assert_eq!(location, "/ui/?lang=ja");
                for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "cmi_ui_8777="] {
                    assert!(set_cookie.contains(attr), "{set_cookie}");
                }
                assert!(!set_cookie.contains(&token), "the cookie is not the token");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.token(), None, "spent");
        // The same token again, in another browser (no cookie): refused.
        assert_eq!(
            g.check("/ui/", Some(&format!("token={token}")), std::iter::empty()),
            Verdict::Forbidden
        );
        let cookie = cookie_of(&admitted);
        let header = format!("other=1; {cookie}");
        assert_eq!(
            g.check("/ui/api/models", None, [header.as_str()].into_iter()),
            Verdict::Pass
        );
        // A cookie of another instance (another port or an earlier start) opens nothing.
        let other = Gate::new(8777);
        assert_eq!(
            other.check("/ui/", None, [header.as_str()].into_iter()),
            Verdict::Unauthorized
        );
        let forged = format!("cmi_ui_8777={}", "0".repeat(64));
        assert_eq!(
            g.check("/ui/", None, [forged.as_str()].into_iter()),
            Verdict::Unauthorized
        );
    }

    #[test]
    fn a_signed_in_browser_following_the_link_again_is_just_redirected() {
        let g = Gate::new(1);
        let token = g.token().expect("a token");
        let cookie = cookie_of(&g.check("/ui/", Some(&format!("token={token}")), std::iter::empty()));
        assert!(matches!(
            g.check("/ui/", Some(&format!("token={token}")), [cookie.as_str()].into_iter()),
            Verdict::Admit { .. }
        ));
    }
}
